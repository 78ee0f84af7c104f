#!/usr/bin/env escript
%% The Erlang half of `cargo bench -p foundation-examples --bench cross_node`: Erlang/OTP
%% distribution between nodes on loopback, measured the way the Rust modes are.
%%
%% Two nodes (this escript and server 1):
%% - casts: CASTS one-way sends of a 64-byte binary from one process to a process on the other
%%   node, then one request/reply that returns once all were handled: casts per second;
%% - calls: WARMUP then CALLS sequential request/replies of the same binary: p50 and p99 in µs;
%% - parallel: 16 senders, each casting CASTS/16 to its own process on the other node: casts/s;
%% - large: 1 GiB sent as 64 KiB binaries, then as 1 MiB ones: MiB/s.
%% Three nodes (this escript, server 1 and server 2; server 2 is started only for these):
%% - all_to_all: on each node one sender per other node (6 in all, compiled code on every node),
%%   each casting CASTS/6 64-byte binaries to its own receiver on that node, all started at once
%%   by one `go`; measured until all 6 receivers handled theirs: casts per second, the total
%%   (every node sends and receives at the same time, over all three connections);
%% - broadcast: 100 subscribers on server 1 and 100 on server 2 in one `pg` group (default scope,
%%   running on all three nodes); once this node sees the 200 members, BROADCASTS (10000)
%%   broadcasts of a 64-byte binary from one process here, each a direct send to every member
%%   of `pg:get_members/1`, looked up per broadcast as an application would: broadcasts per
%%   second, until every subscriber said it received all of them.
%% All nodes are visible ones (not `-hidden`): `pg` sees the members on visible nodes only.
%%
%% Run: `escript examples/benches/erlang/dist_bench.escript [CASTS CALLS [ONLY]]` (Debian:
%% `apt-get install erlang-base`), ONLY `all` (the default) or a comma-separated list of phases
%% among casts, calls, parallel, large, all_to_all, broadcast. It starts epmd if needed, makes
%% this escript a distributed node and starts the others with `peer` (OTP 25+), and prints one
%% JSON line, `null` for what was not run:
%% {"casts_per_s": N, "p50_us": N, "p99_us": N, "parallel_casts_per_s": N, "mib_per_s_64k": N,
%% "mib_per_s_1m": N, "all_to_all_casts_per_s": N, "broadcasts_per_s": N,
%% "broadcast_subscribers": 200}.
-mode(compile).

-define(PHASES, [casts, calls, parallel, large, all_to_all, broadcast]).
-define(BROADCASTS, 10000).
%% Broadcast subscribers on each of the two servers.
-define(SUBSCRIBERS, 100).
-define(GROUP, bench_broadcast).
%% The longest wait for one report (a lost one fails the run instead of hanging it).
-define(TIMEOUT, 120000).

main(Args) ->
    case parse_args(Args) of
        {ok, Casts, Calls, Phases} ->
            run(Casts, Calls, Phases);
        {error, Why} ->
            io:format(standard_error, "~s~nusage: dist_bench.escript [CASTS CALLS [ONLY]], ONLY all or "
                      "a comma-separated list of: ~s~n", [Why, lists:join(",", [atom_to_list(P) || P <- ?PHASES])]),
            halt(2)
    end.

parse_args([]) -> {ok, 100000, 5000, ?PHASES};
parse_args([C, L]) -> parse_args([C, L, "all"]);
parse_args([C, L, Only]) ->
    try {list_to_integer(C), list_to_integer(L)} of
        {Casts, Calls} when Casts > 0, Calls > 0 ->
            case phases(Only) of
                {ok, Phases} -> {ok, Casts, Calls, Phases};
                Error -> Error
            end;
        _ -> {error, "CASTS and CALLS must be positive"}
    catch error:badarg -> {error, "CASTS and CALLS must be integers"}
    end;
parse_args(_) -> {error, "wrong number of arguments"}.

phases("all") -> {ok, ?PHASES};
phases(Only) ->
    Names = string:lexemes(Only, ","),
    Known = [{atom_to_list(P), P} || P <- ?PHASES],
    case [N || N <- Names, not lists:keymember(N, 1, Known)] of
        [] when Names =/= [] -> {ok, [P || P <- ?PHASES, lists:member(atom_to_list(P), Names)]};
        [] -> {error, "no phase given"};
        Unknown -> {error, "unknown phase(s): " ++ lists:join(",", Unknown)}
    end.

run(Casts, Calls, Phases) ->
    os:cmd("epmd -daemon"),
    Suffix = integer_to_list(erlang:unique_integer([positive])) ++ os:getpid(),
    {ok, _} = net_kernel:start([list_to_atom("bench_client_" ++ Suffix), shortnames]),
    erlang:set_cookie(node(), 'foundation-bench'),
    %% The receiving loop (and the senders and subscribers of the three-node phases) as a compiled
    %% module on the other nodes (a fun of this escript's module does not exist there, and an
    %% interpreted one would measure the interpreter); here too, so that every node runs the same.
    Src = filename:join(os:getenv("TMPDIR", "/tmp"), "bench_echo_" ++ Suffix ++ ".erl"),
    ok = file:write_file(Src, echo_module()),
    {ok, bench_echo, Beam} = compile:file(Src, [binary, report]),
    ok = file:delete(Src),
    {module, bench_echo} = code:load_binary(bench_echo, Src, Beam),
    Module = {Src, Beam},
    Body = list_to_binary(lists:duplicate(64, $x)),
    Run = fun(Phase, Measure) ->
        case lists:member(Phase, Phases) of
            true -> Measure();
            false -> null
        end
    end,
    {Peer1, Server1} = start_server("bench_server_" ++ Suffix, Module),
    try
        Echo = spawn(Server1, bench_echo, loop, [0]),
        CastsPerS = Run(casts, fun() -> casts(Echo, Body, Casts) end),
        {P50, P99} = case Run(calls, fun() -> calls(Echo, Body, Calls) end) of
            null -> {null, null};
            Latency -> Latency
        end,
        Parallel = Run(parallel, fun() -> parallel(Server1, Body, Casts) end),
        [Mib64k, Mib1m] = case Run(large, fun() -> [large(Echo, Size, (1 bsl 30) div Size)
                                                    || Size <- [64 bsl 10, 1 bsl 20]] end) of
            null -> [null, null];
            Large -> Large
        end,
        %% The three-node phases, after the two-node ones (which server 2 would not disturb).
        {AllToAll, Broadcasts} = case lists:member(all_to_all, Phases) orelse lists:member(broadcast, Phases) of
            false -> {null, null};
            true ->
                {Peer2, Server2} = start_server("bench_server2_" ++ Suffix, Module),
                try
                    %% Servers 1 and 2 talk directly too (connected before measuring).
                    true = erpc:call(Server1, net_kernel, connect_node, [Server2]),
                    ok = global:sync(),
                    {Run(all_to_all, fun() -> all_to_all([node(), Server1, Server2], Body, Casts) end),
                     Run(broadcast, fun() -> broadcast([Server1, Server2], Body) end)}
                after
                    peer:stop(Peer2)
                end
        end,
        Subscribers = case Broadcasts of
            null -> null;
            _ -> 2 * ?SUBSCRIBERS
        end,
        print([{casts_per_s, CastsPerS}, {p50_us, P50}, {p99_us, P99}, {parallel_casts_per_s, Parallel},
               {mib_per_s_64k, Mib64k}, {mib_per_s_1m, Mib1m}, {all_to_all_casts_per_s, AllToAll},
               {broadcasts_per_s, Broadcasts}, {broadcast_subscribers, Subscribers}])
    after
        peer:stop(Peer1)
    end,
    ok.

%% A peer node with the compiled module loaded, connected to this one (and `global` in sync).
start_server(Name, {Src, Beam}) ->
    {ok, Peer, Server} = peer:start_link(#{
        name => list_to_atom(Name),
        args => ["-setcookie", "foundation-bench"]
    }),
    true = net_kernel:connect_node(Server),
    ok = global:sync(),
    {module, bench_echo} = erpc:call(Server, code, load_binary, [bench_echo, Src, Beam]),
    {Peer, Server}.

print(Results) ->
    Fields = [io_lib:format("\"~s\": ~s", [Key, json(Value)]) || {Key, Value} <- Results],
    io:format("{~s}~n", [lists:join(", ", Fields)]).

json(null) -> "null";
json(N) when is_integer(N) -> integer_to_list(N);
json(X) when is_float(X) -> io_lib:format("~.1f", [X]).

%% Casts: all sent, then one call answered after all of them were handled.
casts(Echo, Body, Casts) ->
    T0 = erlang:monotonic_time(nanosecond),
    cast(Echo, Body, Casts),
    Echo ! {count, self()},
    Casts = receive {count, N} -> N end,
    T1 = erlang:monotonic_time(nanosecond),
    Casts * 1.0e9 / (T1 - T0).

%% Request/reply latency.
calls(Echo, Body, Calls) ->
    _ = [call(Echo, Body) || _ <- lists:seq(1, 500)],
    Times = lists:sort([call(Echo, Body) || _ <- lists:seq(1, Calls)]),
    P50 = lists:nth(max(1, round(Calls * 0.50)), Times) / 1000,
    P99 = lists:nth(max(1, round(Calls * 0.99)), Times) / 1000,
    {P50, P99}.

%% Parallel: 16 senders to 16 receivers (sharing nothing), all at once.
parallel(Server, Body, Casts) ->
    Receivers = [spawn(Server, bench_echo, loop, [0]) || _ <- lists:seq(1, 16)],
    PerSender = Casts div 16,
    Me = self(),
    T2 = erlang:monotonic_time(nanosecond),
    _ = [spawn_link(fun() -> cast(R, Body, PerSender), R ! {count, Me} end) || R <- Receivers],
    _ = [receive {count, PerSender} -> ok end || _ <- Receivers],
    T3 = erlang:monotonic_time(nanosecond),
    PerSender * 16 * 1.0e9 / (T3 - T2).

%% Large payloads: MiB/s.
large(Echo, Size, Count) ->
    Body = binary:copy(<<"x">>, Size),
    T0 = erlang:monotonic_time(nanosecond),
    cast(Echo, Body, Count),
    Echo ! {count, self()},
    Count = receive {count, N} -> N end,
    T1 = erlang:monotonic_time(nanosecond),
    Count * Size / (1 bsl 20) * 1.0e9 / (T1 - T0).

%% All-to-all: a sender on every node for every other node, each to its own receiver there; the
%% senders wait for `go` (sent to all of them in a row), cast, then ask their receiver to report
%% here once it handled all (a sender's casts and its count request arrive in order).
all_to_all(Nodes, Body, Casts) ->
    Pairs = [{From, To} || From <- Nodes, To <- Nodes, From =/= To],
    PerSender = Casts div length(Pairs),
    Senders = [spawn(From, bench_echo, sender, [spawn(To, bench_echo, loop, [0]), Body, PerSender])
               || {From, To} <- Pairs],
    T0 = erlang:monotonic_time(nanosecond),
    _ = [S ! {go, self()} || S <- Senders],
    ok = await_counts(PerSender, length(Senders)),
    T1 = erlang:monotonic_time(nanosecond),
    PerSender * length(Senders) * 1.0e9 / (T1 - T0).

%% Broadcast: `pg` members on both servers, every broadcast a send to each member of the group as
%% `pg:get_members/1` gives it then; then every subscriber is asked for its count (the request
%% arrives after all the broadcasts, from the same process) and says it received all.
broadcast(Servers, Body) ->
    _ = [ok = start_pg(Node) || Node <- [node() | Servers]],
    _ = [spawn(Server, bench_echo, subscriber, [?GROUP]) || Server <- Servers, _ <- lists:seq(1, ?SUBSCRIBERS)],
    Subscribers = length(Servers) * ?SUBSCRIBERS,
    ok = await_members(?GROUP, Subscribers, erlang:monotonic_time(millisecond) + ?TIMEOUT),
    Msg = {cast, Body},
    T0 = erlang:monotonic_time(nanosecond),
    send_broadcasts(?GROUP, Msg, ?BROADCASTS),
    _ = [P ! {count, self()} || P <- pg:get_members(?GROUP)],
    ok = await_counts(?BROADCASTS, Subscribers),
    T1 = erlang:monotonic_time(nanosecond),
    ?BROADCASTS * 1.0e9 / (T1 - T0).

%% The default `pg` scope on Node, not linked to the (short-lived) process that starts it.
start_pg(Node) ->
    case erpc:call(Node, pg, start, [pg]) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end.

await_members(Group, N, Deadline) ->
    case length(pg:get_members(Group)) of
        N -> ok;
        Seen ->
            erlang:monotonic_time(millisecond) < Deadline orelse error({members, Seen, expected, N}),
            timer:sleep(1),
            await_members(Group, N, Deadline)
    end.

send_broadcasts(_, _, 0) -> ok;
send_broadcasts(Group, Msg, N) ->
    _ = [P ! Msg || P <- pg:get_members(Group)],
    send_broadcasts(Group, Msg, N - 1).

%% K reports of {count, Expected}.
await_counts(_, 0) -> ok;
await_counts(Expected, K) ->
    receive
        {count, Expected} -> await_counts(Expected, K - 1);
        {count, N} -> error({count, N, expected, Expected})
    after ?TIMEOUT -> error({timeout, K, reports_missing})
    end.

cast(_, _, 0) -> ok;
cast(Pid, Body, N) -> Pid ! {cast, Body}, cast(Pid, Body, N - 1).

call(Pid, Body) ->
    T0 = erlang:monotonic_time(nanosecond),
    Pid ! {echo, self(), Body},
    receive {echo, Body} -> ok end,
    erlang:monotonic_time(nanosecond) - T0.

echo_module() ->
    "-module(bench_echo).\n"
    "-export([loop/1, sender/3, subscriber/1]).\n"
    %% The receiver: counts casts, echoes requests, and reports its count (then starts from 0).
    "loop(Count) ->\n"
    "    receive\n"
    "        {cast, _} -> loop(Count + 1);\n"
    "        {echo, From, Body} -> From ! {echo, Body}, loop(Count);\n"
    "        {count, From} -> From ! {count, Count}, loop(0)\n"
    "    end.\n"
    %% An all-to-all sender: on `go`, N casts to To, then To reports its count to ReportTo.
    "sender(To, Body, N) ->\n"
    "    receive {go, ReportTo} -> cast(To, Body, N), To ! {count, ReportTo} end.\n"
    "cast(_, _, 0) -> ok;\n"
    "cast(Pid, Body, N) -> Pid ! {cast, Body}, cast(Pid, Body, N - 1).\n"
    %% A broadcast subscriber: a receiver in Group (of the default `pg` scope of its node).
    "subscriber(Group) -> ok = pg:join(Group, self()), loop(0).\n".
