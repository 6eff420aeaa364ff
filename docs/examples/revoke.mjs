// Both admin calls from Node.js 18+ (built-in fetch, no packages):
//   APP_ID=shop ROOT_KEY=rvcr_... USER_ID=42 API_KEY=rvca_... node revoke.mjs
const base = process.env.REVOCAST_URL ?? "http://localhost:8080";
const { APP_ID, ROOT_KEY, USER_ID, API_KEY } = process.env;

const flush = await fetch(`${base}/root/${APP_ID}/flush`, {
  method: "DELETE",
  headers: { Authorization: ROOT_KEY },
});
console.log("flush", flush.status, JSON.stringify(await flush.json()));

const reset = await fetch(`${base}/v2/users/reset/${USER_ID}`, {
  method: "POST",
  headers: { "X-API-Key": API_KEY },
});
console.log("reset", reset.status, JSON.stringify(await reset.json()));

if (!flush.ok || !reset.ok) process.exit(1);
