//! The metric families `foundation-actors` records, for [`Telemetry::describe`]
//! (see [`foundation_core::telemetry::catalog`]).
//!
//! [`Telemetry::describe`]: foundation_core::Telemetry::describe

use foundation_core::telemetry::catalog::MetricFamily;
use metrics::Unit;

/// Every family this crate records: name, kind, unit and help text.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily::counter(
        "foundation_actor_restarts_total",
        "Restarts a supervisor attempted for a failed child (a start that fails counts too), by supervisor and child.",
    ),
    MetricFamily::counter(
        "foundation_actor_crashes_total",
        "Children that failed under a supervisor, by supervisor and child.",
    ),
    MetricFamily::counter(
        "foundation_supervisor_meltdowns_total",
        "Supervisors that stopped because their children failed more often than their restart intensity allows.",
    ),
    MetricFamily::counter(
        "foundation_agent_approvals_total",
        "Tool calls whose approval was decided, by decision.",
    ),
    MetricFamily::counter("foundation_agent_asks_total", "Asks made through an agent's handle on this node, by agent and outcome (ok, timeout, error)."),
    MetricFamily::histogram("foundation_agent_ask_seconds", "Time an ask through an agent's handle took, whatever its outcome (timeouts included), by agent.")
        .in_unit(Unit::Seconds),
    MetricFamily::counter("foundation_agent_steps_total", "Steps an agent took, by agent and outcome."),
    MetricFamily::histogram("foundation_agent_step_seconds", "Time an agent's step took, by agent.")
        .in_unit(Unit::Seconds),
    MetricFamily::counter("foundation_agent_tool_calls_total", "Tool calls made by agents, by tool."),
    MetricFamily::counter(
        "foundation_agent_tool_calls_checked_total",
        "Tool calls a model asked a tool-using agent for, by agent and outcome (ran, or why not: unknown tool, invalid JSON, schema violation, skipped, denied).",
    ),
    MetricFamily::counter(
        "foundation_agent_tool_spec_failures_total",
        "Times a tool server did not give the specs of its tools.",
    ),
    MetricFamily::counter("foundation_agent_tool_steps_total", "Model turns of tool-using agents, by agent."),
    MetricFamily::counter(
        "foundation_aggregate_commands_total",
        "Commands handled by aggregates, by kind and outcome.",
    ),
    MetricFamily::counter("foundation_aggregate_events_total", "Events appended by aggregates, by kind."),
    MetricFamily::histogram(
        "foundation_aggregate_rebuild_seconds",
        "Time to rebuild an aggregate from its snapshot and events, by kind.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::counter(
        "foundation_channel_published_total",
        "Messages that entered a topic on this node (published here, or relayed from another node's broadcast) while it had the topic, by topic.",
    ),
    MetricFamily::counter(
        "foundation_channel_delivered_total",
        "Messages put in a subscriber's queue on this node (one per subscriber reached), by topic.",
    ),
    MetricFamily::counter(
        "foundation_channel_dropped_total",
        "Messages a channel topic dropped for a subscriber too slow to keep up, by topic.",
    ),
    MetricFamily::counter(
        "foundation_channel_refused_total",
        "Broadcasts from another node (or another node in this process) not delivered here: the topic is of another type or not cluster-wide, or the payload did not decode as its type; by topic.",
    ),
    MetricFamily::counter(
        "foundation_config_reload_refused_total",
        "Provider limit reloads refused as invalid (the old limits stay), by provider.",
    ),
    MetricFamily::histogram(
        "foundation_embedding_batch_texts",
        "Texts per embedding request sent to a model, by model.",
    ),
    MetricFamily::counter(
        "foundation_llm_deprecated_calls_total",
        "Calls to a model the model registry marks deprecated, by provider and model.",
    ),
    MetricFamily::counter(
        "foundation_llm_rate_limited_total",
        "Provider answers that said the rate limit was hit (HTTP 429), by provider and model.",
    ),
    MetricFamily::counter(
        "foundation_llm_requests_total",
        "Model calls, by provider, model, tenant and outcome.",
    ),
    MetricFamily::histogram(
        "foundation_llm_request_seconds",
        "Time a successful model call took, by provider and model.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::counter(
        "foundation_llm_semantic_embedding_failures_total",
        "Embeddings the semantic cache tier could not get (the lookup went on without it).",
    ),
    MetricFamily::counter(
        "foundation_llm_streams_cancelled_total",
        "Streamed completions dropped by their caller before the end, by provider.",
    ),
    MetricFamily::counter(
        "foundation_llm_tokens_total",
        "Tokens used by model calls, by provider, model, tenant and kind (prompt or completion).",
    ),
    MetricFamily::gauge(
        "foundation_llm_cost_usd",
        "Cost of model calls in USD since the process started, by provider, model and tenant (priced from the configured tables).",
    ),
    MetricFamily::histogram(
        "foundation_llm_call_cost_usd",
        "Cost of each model call that used tokens in USD, by provider, model and tenant: the distribution behind foundation_llm_cost_usd.",
    ),
    MetricFamily::counter(
        "foundation_pipeline_processed_total",
        "Items a pipeline stage processed, by pipeline and stage.",
    ),
    MetricFamily::counter(
        "foundation_pipeline_retries_total",
        "Retries of a pipeline stage, by pipeline and stage.",
    ),
    MetricFamily::counter(
        "foundation_pipeline_dead_letters_total",
        "Items a pipeline stage gave up on (retries exhausted, an error that is not retried, a panic, or an output that closed), by pipeline and stage.",
    ),
    MetricFamily::histogram(
        "foundation_pipeline_stage_seconds",
        "Time from an item's first attempt to its success in a pipeline stage (retries and their backoff included), by pipeline and stage.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::counter("foundation_pool_destroyed_total", "Pool workers destroyed, by pool and reason (idle, unhealthy, discarded, shutdown)."),
    MetricFamily::counter("foundation_pool_created_total", "Pool workers created, by pool."),
    MetricFamily::counter("foundation_pool_create_failures_total", "Pool workers the factory failed to create, by pool."),
    MetricFamily::counter("foundation_pool_shed_total", "Waiting checkouts shed from a full queue for higher-priority work, by pool."),
    MetricFamily::counter("foundation_pool_overloaded_total", "Checkouts refused because the pool's queue was full, by pool."),
    MetricFamily::counter("foundation_pool_timeouts_total", "Checkouts that waited past their timeout, by pool."),
    MetricFamily::histogram(
        "foundation_pool_wait_seconds",
        "Time a checkout waited for a pool worker, by pool.",
    )
    .in_unit(Unit::Seconds),
    MetricFamily::gauge("foundation_pool_size", "Workers in a pool, by pool."),
    MetricFamily::gauge("foundation_pool_busy", "Pool workers checked out, by pool."),
    MetricFamily::gauge("foundation_pool_idle", "Pool workers ready for a checkout, by pool."),
    MetricFamily::gauge("foundation_pool_waiting", "Checkouts waiting for a pool worker, by pool."),
    MetricFamily::gauge("foundation_registry_instances", "Instances registered for a service, by service."),
    MetricFamily::counter("foundation_tenant_requests_total", "Requests admitted for a tenant, by tenant."),
    MetricFamily::counter(
        "foundation_tenant_refused_total",
        "Requests refused for a tenant over its quota, by tenant.",
    ),
    MetricFamily::counter("foundation_tenant_tokens_total", "Tokens used for a tenant, by tenant."),
    MetricFamily::gauge(
        "foundation_tenant_cost",
        "What a tenant was charged since the process started (settled tokens at its price per 1000, in the application's currency unit), by tenant.",
    ),
    MetricFamily::counter(
        "foundation_wire_decode_errors_total",
        "Messages from another node that did not decode, by message type.",
    ),
];
