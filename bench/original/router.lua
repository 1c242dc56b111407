-- A model of the original Ceryx's router (OpenResty + Lua + Redis), for the benchmark only.
-- Written from the documented behaviour of the original (its request flow, cache and
-- headers), NOT the original code, which this repository does not hold. It does what the
-- original does per request, at the same cost: two Redis connections, neither pooled, both
-- closed when the request is done; `enforce_https` cached 5 s in a shared dict; the route's
-- target (falling back to `$wildcard`) and `mode` read from Redis on every request (the
-- original's route cache does not work). Its documented bugs are kept (a Redis error in the
-- route lookup counts as no route), as they cost nothing when all goes well.
--
-- nginx runs this file per request (`access_by_lua_file`): the top level is the handler.
-- Debian packages lua-resty-redis as `nginx.redis` (lua-nginx-redis).
local redis = require "nginx.redis"

local prefix = os.getenv("CERYX_REDIS_PREFIX") or "ceryx"
local redis_host = os.getenv("CERYX_REDIS_HOST") or "127.0.0.1"
local redis_port = tonumber(os.getenv("CERYX_REDIS_PORT")) or 6379
local redis_password = os.getenv("CERYX_REDIS_PASSWORD")
local redis_timeout_ms = 100
local cache = ngx.shared.ceryx
local cache_seconds = 5

-- A new connection (and AUTH when a password is set); nil and a message on failure.
local function connect()
    local red = redis:new()
    red:set_timeout(redis_timeout_ms)
    local ok, err = red:connect(redis_host, redis_port)
    if not ok then
        return nil, err
    end
    if redis_password and redis_password ~= "" then
        ok, err = red:auth(redis_password)
        if not ok then
            red:close()
            return nil, err
        end
    end
    return red
end

local function fail(status, message)
    ngx.log(ngx.ERR, "ceryx: ", message)
    ngx.status = status
    ngx.header["Content-Type"] = "text/html"
    ngx.say(status == 503 and "Ceryx - Service Not Available" or "Ceryx - Server Error")
    return ngx.exit(status)
end

local function absent(value)
    return value == nil or value == ngx.null
end

-- 1. The first connection: the enforce_https check.
local red, err = connect()
if not red then
    return fail(500, "redis connect: " .. tostring(err))
end

-- 2. `$host`: lower-cased, port and trailing dot removed by nginx.
local host = ngx.var.host
local settings_key = prefix .. ":settings:" .. host

-- 3. Plain HTTP only: enforce_https, cached 5 s (values "1" and "0"; an absent field is not cached).
if ngx.var.scheme == "http" then
    local cache_key = host .. ":enforce_https"
    local enforce = cache:get(cache_key)
    if enforce == nil then
        enforce = red:hget(settings_key, "enforce_https")
        if enforce == "1" or enforce == "0" then
            cache:set(cache_key, enforce, cache_seconds)
        end
    end
    if enforce == "1" then
        red:close()
        return ngx.redirect("https://" .. host .. ngx.var.request_uri, ngx.HTTP_MOVED_PERMANENTLY)
    end
end
red:close()

-- 4. The route, on a second, separate connection.
local routes, err2 = connect()
if not routes then
    return fail(500, "redis connect: " .. tostring(err2))
end
-- Nil or an error: `$wildcard`.
local target = routes:get(prefix .. ":routes:" .. host)
if absent(target) then
    target = routes:get(prefix .. ":routes:$wildcard")
end
if absent(target) then
    routes:close()
    return fail(503, "no route for " .. host)
end
-- Always the requested host's mode, even for a `$wildcard` target.
local mode = routes:hget(settings_key, "mode")
routes:close()
if absent(mode) then
    mode = "proxy"
end

-- 5. The target: `http://` unless it has a scheme, one trailing `/` off, the raw request URI on.
if target:sub(1, 7) ~= "http://" and target:sub(1, 8) ~= "https://" then
    target = "http://" .. target
end
if target:sub(-1) == "/" then
    target = target:sub(1, -2)
end
target = target .. ngx.var.request_uri

-- 6. Redirect or proxy (any mode but "redirect" proxies).
if mode == "redirect" then
    return ngx.redirect(target, ngx.HTTP_MOVED_PERMANENTLY)
end
ngx.var.target = target
