#!/bin/sh
# Log one user out everywhere: POST /v2/users/reset/{id} with an admin API key.
# Fill in USER_ID and API_KEY (from `revocast keys create`).
set -eu
curl -sS -X POST "${REVOCAST_URL:-http://localhost:8080}/v2/users/reset/${USER_ID}" \
  -H "X-API-Key: ${API_KEY}"
echo
