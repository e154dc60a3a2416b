-- GET of one existing payout; set TOKEN in the environment to send a bearer token.
wrk.method = "GET"
wrk.headers["X-API-Version"] = "2"
wrk.headers["Accept"] = "application/json"
local token = os.getenv("TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
