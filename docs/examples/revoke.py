# Both admin calls with Python requests (a package: pip install requests, or python3-requests
# on Debian and Ubuntu):
#   APP_ID=shop ROOT_KEY=rvcr_... USER_ID=42 API_KEY=rvca_... python3 revoke.py
import os

try:
    import requests
except ImportError:
    raise SystemExit("revoke.py needs the requests package: pip install requests (or python3-requests on Debian and Ubuntu)")

base = os.environ.get("REVOCAST_URL", "http://localhost:8080")

r = requests.delete(f"{base}/root/{os.environ['APP_ID']}/flush",
                    headers={"Authorization": os.environ["ROOT_KEY"]}, timeout=10)
print("flush", r.status_code, r.json())

r2 = requests.post(f"{base}/v2/users/reset/{os.environ['USER_ID']}",
                   headers={"X-API-Key": os.environ["API_KEY"]}, timeout=10)
print("reset", r2.status_code, r2.json())

raise SystemExit(0 if r.ok and r2.ok else 1)
