-- luacheck config for the Redis Functions library in edge_nodes/cache/lua (Lua 5.1 in Redis)
std = "lua51"
read_globals = {"redis", "cmsgpack", "cjson", "KEYS", "ARGV", "bit", "struct"}
max_line_length = 120
