//! Config loading, precedence, bad input and run-time reconfiguration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::Write;
use std::time::Duration;

use foundation_core::config::{ConfigError, ConfigLoader, FoundationConfig, IssueKind, LiveConfig, Source};

fn write_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn single_issue(err: ConfigError) -> foundation_core::config::ConfigIssue {
    let issues = err.issues();
    assert_eq!(issues.len(), 1, "expected one issue, got {err}");
    issues[0].clone()
}

#[test]
fn defaults_are_valid_and_documented_constants() {
    let c = ConfigLoader::new().load().unwrap();
    assert_eq!(c, FoundationConfig::default());
    assert_eq!(c.telemetry.quantiles, vec![0.5, 0.9, 0.99, 0.999]);
    assert_eq!(c.telemetry.window, Duration::from_secs(60));
    assert!(c.telemetry.listen.is_none());
}

#[test]
fn precedence_is_file_then_env_then_code() {
    let f = write_file(
        "[node]\nname = \"from-file\"\n[telemetry]\nwindow = \"10s\"\nwindow_buckets = 2\nmax_relative_error = 0.02\n",
    );
    let c = ConfigLoader::new()
        .file(f.path())
        .env_vars([
            ("FOUNDATION_TELEMETRY__WINDOW", "20s"),
            ("FOUNDATION_TELEMETRY__WINDOW_BUCKETS", "4"),
            ("PATH", "/usr/bin"),                     // not ours: ignored
            ("FOUNDATION_CONFIG", "/elsewhere.toml"), // reserved: not a key
        ])
        .set("telemetry.window", "30s")
        .load()
        .unwrap();
    assert_eq!(c.node.name, "from-file"); // file only
    assert_eq!(c.telemetry.window_buckets, 4); // env beats file
    assert_eq!(c.telemetry.window, Duration::from_secs(30)); // code beats env
    assert_eq!(c.telemetry.max_relative_error, 0.02); // file beats default
}

#[test]
fn env_values_are_typed_like_toml() {
    let c = ConfigLoader::new()
        .env_vars([
            ("FOUNDATION_TELEMETRY__QUANTILES", "[0.5, 0.75]"),
            ("FOUNDATION_TELEMETRY__LISTEN", "127.0.0.1:9464"),
            ("foundation_node__name", "lower-case-works"),
        ])
        .load()
        .unwrap();
    assert_eq!(c.telemetry.quantiles, vec![0.5, 0.75]);
    assert_eq!(c.telemetry.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.node.name, "lower-case-works");
}

#[test]
fn malformed_toml_names_the_line_and_the_key() {
    let f = write_file("[telemetry]\nwindow = 5s\n");
    let err = ConfigLoader::new().file(f.path()).load().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Malformed { .. }), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("window = 5s"), "{text}");
    assert!(text.contains(&f.path().display().to_string()), "{text}");
}

#[test]
fn wrong_type_names_key_value_expected_and_source() {
    let f = write_file("[telemetry]\nwindow_buckets = \"six\"\n");
    let issue = single_issue(ConfigLoader::new().file(f.path()).load().unwrap_err());
    assert_eq!(issue.kind, IssueKind::WrongType);
    assert_eq!(issue.key, "telemetry.window_buckets");
    assert_eq!(issue.value.as_deref(), Some("\"six\""));
    assert!(issue.expected.contains("u32"), "{}", issue.expected);
    assert_eq!(issue.source, Source::File(f.path().to_path_buf()));

    let err = ConfigLoader::new().set("telemetry.listen", 5).load().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`telemetry.listen` = 5 (code): wrong type"), "{text}");

    let issue = single_issue(
        ConfigLoader::new().env_vars([("FOUNDATION_TELEMETRY__WINDOW", "soon")]).load().unwrap_err(),
    );
    assert_eq!(issue.key, "telemetry.window");
    assert!(issue.expected.contains("\"5s\""), "{}", issue.expected);
    assert_eq!(issue.source, Source::Env("FOUNDATION_TELEMETRY__WINDOW".into()));
}

#[test]
fn unknown_key_is_an_error_not_ignored() {
    let f = write_file("[telemetry]\nlisen = \"127.0.0.1:9000\"\n");
    let issue = single_issue(ConfigLoader::new().file(f.path()).load().unwrap_err());
    assert_eq!(issue.kind, IssueKind::UnknownKey);
    assert_eq!(issue.key, "telemetry.lisen");
    assert!(issue.expected.contains("`listen`"), "{}", issue.expected);

    let issue = single_issue(ConfigLoader::new().set("telemtry.window", "1s").load().unwrap_err());
    assert_eq!(issue.key, "telemtry");
    assert!(issue.expected.contains("`telemetry`"), "{}", issue.expected);

    // A single underscore where a double one belongs is a misspelt key, too.
    let issue = single_issue(
        ConfigLoader::new().env_vars([("FOUNDATION_TELEMETRY_WINDOW", "1s")]).load().unwrap_err(),
    );
    assert_eq!(issue.key, "telemetry_window");
    assert_eq!(issue.source, Source::Env("FOUNDATION_TELEMETRY_WINDOW".into()));
}

#[test]
fn out_of_range_values_are_all_reported_by_key() {
    let f =
        write_file("[telemetry]\nwindow = \"0s\"\nquantiles = [0.5, 1.5]\n[error_context]\nmax_steps = 2\n");
    let err = ConfigLoader::new().file(f.path()).load().unwrap_err();
    let keys: Vec<&str> = err.issues().iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"telemetry.window"), "{err}");
    assert!(keys.contains(&"telemetry.quantiles"), "{err}");
    assert!(keys.contains(&"error_context.max_steps"), "{err}");
    for issue in err.issues() {
        assert_eq!(issue.kind, IssueKind::OutOfRange);
    }
    let text = err.to_string();
    assert!(text.contains("`telemetry.window` = 0ms"), "{text}");
    assert!(text.contains("a duration from 1s to 24h"), "{text}");
}

#[test]
fn discovery_settings_are_checked() {
    let f = write_file("[cluster]\ngossip = true\ngossip_group = \"10.0.0.1\"\ngossip_interval = \"1ms\"\n");
    let err = ConfigLoader::new().file(f.path()).load().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`cluster.gossip_group`") && text.contains("an IPv4 multicast address"), "{text}");
    assert!(text.contains("`cluster.gossip_interval`") && text.contains("from 50ms to 60s"), "{text}");
    // Not an address at all: a type error naming the key.
    let f = write_file("[cluster]\ngossip_group = \"everyone\"\n");
    let err = ConfigLoader::new().file(f.path()).load().unwrap_err();
    assert!(err.to_string().contains("cluster.gossip_group"), "{err}");
    let ok = ConfigLoader::new().set("cluster.gossip", true).load().unwrap();
    assert!(ok.cluster.gossip && ok.cluster.gossip_group.is_multicast());
    // `cluster = true` is short for `cluster.gossip = true`, and mixes with the other keys.
    let f = write_file("cluster = true\n");
    let config = ConfigLoader::new().file(f.path()).set("cluster.cookie", "abc").load().unwrap();
    assert!(config.cluster.gossip && config.cluster.cookie == "abc");
    assert!(ConfigLoader::new().set("cluster", true).load().unwrap().cluster.gossip);
    assert!(!ConfigLoader::new().set("cluster", false).load().unwrap().cluster.gossip);
}

#[test]
fn missing_required_file_is_an_io_error_optional_is_skipped() {
    let err = ConfigLoader::new().file("/nonexistent/foundation.toml").load().unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/foundation.toml"));
    assert!(ConfigLoader::new().optional_file("/nonexistent/foundation.toml").load().is_ok());
}

#[tokio::test]
async fn subscribers_hear_changes_to_watched_keys_only() {
    let live = LiveConfig::new(FoundationConfig::default()).unwrap();
    let mut window = live.subscribe(["telemetry.window"]).unwrap();
    let mut node = live.subscribe(["node"]).unwrap();

    assert_eq!(live.set("node.name", "n2").unwrap(), ["node.name"]);
    let change = node.changed().await.unwrap();
    assert_eq!(change.keys, ["node.name"]);
    assert_eq!(change.config.node.name, "n2");

    live.update(|c| c.telemetry.window = Duration::from_secs(5)).unwrap();
    let change = window.changed().await.unwrap();
    assert_eq!(change.keys, ["telemetry.window"]);
    // The window subscriber was not woken for node.name: its first change is the window one.
    assert_eq!(change.config.telemetry.window, Duration::from_secs(5));
    // Setting a value to what it already is changes nothing and wakes nobody.
    assert!(live.set("node.name", "n2").unwrap().is_empty());
    let nothing = tokio::time::timeout(Duration::from_millis(50), node.changed()).await;
    assert!(nothing.is_err(), "no change expected");
}

#[tokio::test]
async fn invalid_update_is_rejected_and_old_value_stays() {
    let live = LiveConfig::new(FoundationConfig::default()).unwrap();
    let mut sub = live.subscribe(["telemetry"]).unwrap();
    let err = live.set("telemetry.window_buckets", 0).unwrap_err();
    assert_eq!(err.issues()[0].key, "telemetry.window_buckets");
    assert!(live.update(|c| c.node.name = "bad name!".into()).is_err());
    assert!(live.set("telemetry.bogus", 1).is_err());
    assert_eq!(*live.current(), FoundationConfig::default());
    let nothing = tokio::time::timeout(Duration::from_millis(50), sub.changed()).await;
    assert!(nothing.is_err(), "a rejected change must not be announced");
}

#[test]
fn subscribing_to_an_unknown_key_is_an_error() {
    let live = LiveConfig::new(FoundationConfig::default()).unwrap();
    let err = live.subscribe(["telemetry.windw"]).unwrap_err();
    assert_eq!(err.issues()[0].key, "telemetry.windw");
    assert!(live.subscribe(["telemetry.listen", "error_context"]).is_ok());
}

#[test]
fn live_config_refuses_an_invalid_start() {
    let mut c = FoundationConfig::default();
    c.telemetry.window_buckets = 1000;
    assert!(LiveConfig::new(c).is_err());
}

#[test]
fn llm_providers_take_a_profile_with_overrides_and_bad_ones_are_named() {
    let f = write_file(
        "[llm]\nchain = [\"main\", \"backup\"]\n\
         [llm.providers.main]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n\
         profile = \"openai-tier-1\"\nlimits = { rpm = 600, tpm = 40000 }\n\
         [llm.providers.backup]\nprofile = \"local\"\n",
    );
    let config = ConfigLoader::new().file(f.path()).load().unwrap();
    let main = &config.llm.providers["main"];
    let limits = main.effective_limits();
    assert_eq!((limits.rpm, limits.tpm, limits.rpd), (Some(600), Some(40_000), Some(10_000)));
    // Overridden from the environment like any key.
    let config = ConfigLoader::new()
        .file(f.path())
        .env_vars([("FOUNDATION_LLM__PROVIDERS__MAIN__ATTEMPTS", "5")])
        .load()
        .unwrap();
    assert_eq!(config.llm.providers["main"].attempts, 5);

    let f = write_file(
        "[llm]\nchain = [\"main\", \"missing\"]\n\
         [llm.providers.main]\nprofile = \"openai-tier-9\"\nlimits = { rpm = 0 }\n",
    );
    let text = ConfigLoader::new().file(f.path()).load().unwrap_err().to_string();
    for expected in
        ["llm.chain", "missing", "llm.providers.main.profile", "openai-tier-1", "llm.providers.main.limits"]
    {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
}

#[test]
fn reserved_environment_variables_are_not_read_as_keys() {
    let config = ConfigLoader::new()
        .env_vars([
            ("FOUNDATION_COOKIE", "secret"),
            ("FOUNDATION_LOG", "debug"),
            ("FOUNDATION_CONFIG", "x.toml"),
        ])
        .load()
        .unwrap();
    assert_eq!(config, foundation_core::FoundationConfig::default());
}

#[test]
fn a_malformed_file_error_never_carries_the_rest_of_the_file() {
    // A parse error far from the secret: neither its message nor its debug form holds the cookie.
    let text = "[cluster]\ncookie = \"s3cret-cookie-value\"\n\n[node]\nname = = \"broken\"\n";
    let err = ConfigLoader::new().toml_str(text).load().unwrap_err();
    assert!(matches!(err, ConfigError::Malformed { .. }), "{err}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("s3cret-cookie-value"), "{shown}");
    }
    assert!(err.to_string().contains("line 5"), "{err}");
}

#[test]
fn off_loopback_a_short_cookie_is_refused_by_the_loader_too() {
    let load = |cookie: &str| {
        ConfigLoader::new().set("cluster.listen", "10.0.0.1:4100").set("cluster.cookie", cookie).load()
    };
    let issue = single_issue(load("fifteen-bytes!!").unwrap_err());
    assert_eq!(issue.key, "cluster.cookie");
    assert!(issue.expected.contains("at least 16 bytes"), "{}", issue.expected);
    assert!(load("sixteen-bytes!!!").is_ok());
    // On loopback any cookie will do.
    assert!(ConfigLoader::new().set("cluster.cookie", "abc").load().is_ok());
}
