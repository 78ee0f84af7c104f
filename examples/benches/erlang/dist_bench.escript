#!/usr/bin/env escript
%%! -hidden
%% The Erlang half of `cargo bench -p foundation-examples --bench cross_node`: Erlang/OTP
%% distribution between two nodes on loopback, measured the way the Rust modes are.
%%
%% - casts: CASTS one-way sends of a 64-byte binary from one process to a process on the other
%%   node, then one request/reply that returns once all were handled: casts per second;
%% - latency: WARMUP then CALLS sequential request/replies of the same binary: p50 and p99 in µs;
%% - parallel: 16 senders, each casting CASTS/16 to its own process on the other node: casts/s;
%% - large: 128 MiB sent as 64 KiB binaries, then as 1 MiB ones: MiB/s.
%%
%% Run: `escript examples/benches/erlang/dist_bench.escript [CASTS CALLS]` (Debian:
%% `apt-get install erlang-base`). It starts epmd if needed, makes this escript a distributed node
%% and starts the other node with `peer` (OTP 25+), and prints one JSON line:
%% {"casts_per_s": N, "p50_us": N, "p99_us": N, "parallel_casts_per_s": N, "mib_per_s_64k": N,
%% "mib_per_s_1m": N}.
-mode(compile).

main(Args) ->
    {Casts, Calls} = case Args of
        [C, L] -> {list_to_integer(C), list_to_integer(L)};
        _ -> {100000, 5000}
    end,
    os:cmd("epmd -daemon"),
    Suffix = integer_to_list(erlang:unique_integer([positive])) ++ os:getpid(),
    {ok, _} = net_kernel:start([list_to_atom("bench_client_" ++ Suffix), shortnames]),
    erlang:set_cookie(node(), 'foundation-bench'),
    {ok, Peer, Server} = peer:start_link(#{
        name => list_to_atom("bench_server_" ++ Suffix),
        args => ["-setcookie", "foundation-bench", "-hidden"]
    }),
    true = net_kernel:connect_node(Server),
    %% The receiving loop as a compiled module on the other node (a fun of this escript's module
    %% does not exist there, and an interpreted one would measure the interpreter).
    Src = filename:join(os:getenv("TMPDIR", "/tmp"), "bench_echo_" ++ Suffix ++ ".erl"),
    ok = file:write_file(Src, echo_module()),
    {ok, bench_echo, Beam} = compile:file(Src, [binary, report]),
    ok = file:delete(Src),
    {module, bench_echo} = erpc:call(Server, code, load_binary, [bench_echo, Src, Beam]),
    Echo = spawn(Server, bench_echo, loop, [0]),
    Body = list_to_binary(lists:duplicate(64, $x)),
    %% Casts: all sent, then one call answered after all of them were handled.
    T0 = erlang:monotonic_time(nanosecond),
    cast(Echo, Body, Casts),
    Echo ! {count, self()},
    Casts = receive {count, N} -> N end,
    T1 = erlang:monotonic_time(nanosecond),
    CastsPerS = Casts * 1.0e9 / (T1 - T0),
    %% Request/reply latency.
    _ = [call(Echo, Body) || _ <- lists:seq(1, 500)],
    Times = lists:sort([call(Echo, Body) || _ <- lists:seq(1, Calls)]),
    P50 = lists:nth(max(1, round(Calls * 0.50)), Times) / 1000,
    P99 = lists:nth(max(1, round(Calls * 0.99)), Times) / 1000,
    %% Parallel: 16 senders to 16 receivers (sharing nothing), all at once.
    Receivers = [spawn(Server, bench_echo, loop, [0]) || _ <- lists:seq(1, 16)],
    PerSender = Casts div 16,
    Me = self(),
    T2 = erlang:monotonic_time(nanosecond),
    _ = [spawn_link(fun() -> cast(R, Body, PerSender), R ! {count, Me} end) || R <- Receivers],
    _ = [receive {count, PerSender} -> ok end || _ <- Receivers],
    T3 = erlang:monotonic_time(nanosecond),
    Parallel = PerSender * 16 * 1.0e9 / (T3 - T2),
    %% Large payloads: MiB/s.
    [Mib64k, Mib1m] = [large(Echo, Size, (128 bsl 20) div Size) || Size <- [64 bsl 10, 1 bsl 20]],
    io:format("{\"casts_per_s\": ~.1f, \"p50_us\": ~.1f, \"p99_us\": ~.1f, \"parallel_casts_per_s\": ~.1f, "
              "\"mib_per_s_64k\": ~.1f, \"mib_per_s_1m\": ~.1f}~n",
              [CastsPerS, P50, P99, Parallel, Mib64k, Mib1m]),
    peer:stop(Peer),
    ok.

large(Echo, Size, Count) ->
    Body = binary:copy(<<"x">>, Size),
    T0 = erlang:monotonic_time(nanosecond),
    cast(Echo, Body, Count),
    Echo ! {count, self()},
    Count = receive {count, N} -> N end,
    T1 = erlang:monotonic_time(nanosecond),
    Count * Size / (1 bsl 20) * 1.0e9 / (T1 - T0).

cast(_, _, 0) -> ok;
cast(Pid, Body, N) -> Pid ! {cast, Body}, cast(Pid, Body, N - 1).

call(Pid, Body) ->
    T0 = erlang:monotonic_time(nanosecond),
    Pid ! {echo, self(), Body},
    receive {echo, Body} -> ok end,
    erlang:monotonic_time(nanosecond) - T0.

echo_module() ->
    "-module(bench_echo).\n"
    "-export([loop/1]).\n"
    "loop(Count) ->\n"
    "    receive\n"
    "        {cast, _} -> loop(Count + 1);\n"
    "        {echo, From, Body} -> From ! {echo, Body}, loop(Count);\n"
    "        {count, From} -> From ! {count, Count}, loop(0)\n"
    "    end.\n".
