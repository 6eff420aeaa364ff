#!/bin/sh
# Log every user of an app out: DELETE /root/{app_id}/flush with the app's root key.
# Fill in APP_ID and ROOT_KEY (from `revocast apps create`); REVOCAST_URL defaults to the
# local server.
set -eu
curl -sS -X DELETE "${REVOCAST_URL:-http://localhost:8080}/root/${APP_ID}/flush" \
  -H "Authorization: ${ROOT_KEY}"
echo
