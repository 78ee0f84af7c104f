//! `foundation certs`: the certificates of a TLS cluster in one command. A new CA, a
//! certificate for each node that names it (`NODE.<server_name>`, the rule
//! `Cluster::start` enforces: see [`foundation_cluster::node_certificate_name`]) and one for
//! the command-line tools (`*.tools.<server_name>`), written into a private directory with
//! private keys readable by their owner only; then the configuration that uses them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

/// Options of `foundation certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write the files into (created if missing, private: mode 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The nodes' names, comma-separated; each name is one DNS label (lowercase letters, digits, `-`).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// The cluster's `cluster.tls.server_name`: node certificates are for NODE.SERVER_NAME.
    #[arg(long, default_value = foundation_core::config::DEFAULT_TLS_SERVER_NAME)]
    server_name: String,
    /// How many days the certificates are valid from today (1 to 36500).
    #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
    /// Replace files that exist (a new CA and new keys: every node then needs its new files).
    #[arg(long)]
    force: bool,
}

/// One file to write.
struct Target {
    /// Its name in the output directory.
    name: String,
    /// A private key (mode 0600), or a certificate (0644, in the 0700 directory).
    private: bool,
    /// What it holds, for error messages.
    what: String,
}

/// The files for `nodes`, in the order they are written (the CA first).
fn targets(nodes: &[String]) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut pair = |stem: &str, what: String| {
        targets.push(Target {
            name: format!("{stem}.pem"),
            private: false,
            what: format!("{what}'s certificate"),
        });
        targets.push(Target {
            name: format!("{stem}-key.pem"),
            private: true,
            what: format!("{what}'s key"),
        });
    };
    pair("ca", "the CA".to_string());
    for node in nodes {
        pair(node, format!("node `{node}`"));
    }
    pair("tools", "the tools".to_string());
    targets
}

/// Why these options cannot be used, if they cannot: no node, a name a certificate cannot
/// carry, the same name twice, or two files that would have the same name (a node called `ca`
/// or `tools`, or `x` and `x-key`). File names are compared without regard to case, like DNS
/// names (and some file systems).
fn check(args: &CertsArgs) -> Result<(), String> {
    if args.nodes.iter().all(|n| n.is_empty()) {
        return Err("--nodes: no node name given (e.g. --nodes n1,n2,n3)".to_string());
    }
    let server_name = &args.server_name;
    if server_name.is_empty() || server_name.ends_with('.') || server_name.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(format!("--server-name `{server_name}`: expected a DNS name such as `foundation-node`"));
    }
    let mut seen = BTreeMap::new();
    for node in &args.nodes {
        foundation_cluster::node_certificate_name(node, server_name).map_err(|e| format!("--nodes: {e}"))?;
        if let Some(first) = seen.insert(node.to_ascii_lowercase(), node) {
            return Err(match first == node {
                true => format!("--nodes: `{node}` is listed twice"),
                false => format!(
                    "--nodes: `{first}` and `{node}` are the same name to a certificate (DNS names ignore \
                     case)"
                ),
            });
        }
    }
    let mut files = BTreeMap::new();
    for target in targets(&args.nodes) {
        if let Some(other) = files.insert(target.name.to_ascii_lowercase(), target.what.clone()) {
            return Err(format!(
                "--nodes: {other} and {} would both be the file {}: rename the node",
                target.what, target.name
            ));
        }
    }
    Ok(())
}

/// The UTC calendar date (year, month, day) `days` days after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): certificates' validity without a date library.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // In range: a day of the month, a month, and a year within ±5.8 million of 1970.
    (year as i32, month as u8, day as u8)
}

/// Names, validity and uses shared by the node and tools certificates.
fn end_entity_params(
    common_name: &str,
    dns_names: Vec<String>,
    validity: (i64, i64),
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(dns_names)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    set_validity(&mut params, validity);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every node is both server (it listens) and client (it dials).
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Valid from the start of the first day to the start of the second (days since 1970, UTC).
fn set_validity(params: &mut CertificateParams, (from, until): (i64, i64)) {
    let date = |days| {
        let (year, month, day) = civil_from_days(days);
        rcgen::date_time_ymd(year, month, day)
    };
    params.not_before = date(from);
    params.not_after = date(until);
}

/// The PEM text of every target, by file name: a new CA, then the certificates it signs.
fn generate(args: &CertsArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let today = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    // From yesterday: a host whose clock is a little behind accepts them at once.
    let validity = (today - 1, today + i64::from(args.days));
    let server_name = &args.server_name;
    let mut files = BTreeMap::new();

    let mut ca = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, format!("foundation cluster CA ({server_name})"));
    ca.distinguished_name = subject;
    set_validity(&mut ca, validity);
    // It signs node and tools certificates only, never another CA.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    files.insert("ca.pem".to_string(), ca.self_signed(&ca_key)?.pem());
    files.insert("ca-key.pem".to_string(), ca_key.serialize_pem());
    let issuer = Issuer::new(ca, ca_key);

    let mut issue = |stem: &str, params: CertificateParams| -> Result<(), rcgen::Error> {
        let key = KeyPair::generate()?;
        files.insert(format!("{stem}.pem"), params.signed_by(&key, &issuer)?.pem());
        files.insert(format!("{stem}-key.pem"), key.serialize_pem());
        Ok(())
    };
    for node in &args.nodes {
        let own = foundation_cluster::node_certificate_name(node, server_name).map_err(anyhow::Error::msg)?;
        issue(node, end_entity_params(node, vec![server_name.clone(), own], validity)?)?;
    }
    let tools = foundation_cluster::tools_certificate_name(server_name);
    issue("tools", end_entity_params("foundation tools", vec![server_name.clone(), tools], validity)?)?;
    Ok(files)
}

/// Writes `text` to a new file `path` (never through an existing file or link: the caller
/// removed it if it may be replaced), with `mode` on Unix.
fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `path` as a TOML string (quoted and escaped).
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Why `out` cannot receive the files, if it cannot: an existing `out` must be a directory
/// only its owner can enter (the CA's private key goes there), and every target already there
/// must be a file (so that `--force` never stops halfway on a directory of that name).
fn unusable_out(out: &Path, targets: &[Target]) -> Option<String> {
    let metadata = std::fs::metadata(out).ok()?;
    if !metadata.is_dir() {
        return Some(format!("{} exists and is not a directory", out.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} exists and other users may enter it (mode {mode:o}); the CA's private key goes there: \
                 choose a new directory (it is made private) or `chmod 700` this one",
                out.display()
            ));
        }
    }
    targets.iter().map(|t| out.join(&t.name)).find_map(|path| {
        let kind = path.symlink_metadata().ok()?.file_type();
        (!kind.is_file() && !kind.is_symlink())
            .then(|| format!("{} exists and is not a file", path.display()))
    })
}

/// Runs `foundation certs`: exit 2 (nothing written) for options that cannot be used or files
/// that exist without `--force`.
pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = check(&args) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let targets = targets(&args.nodes);
    let existing: Vec<String> = targets
        .iter()
        .map(|t| args.out.join(&t.name))
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        eprintln!(
            "error: {} already exist{}: nothing written. Replacing them makes a new CA and new keys \
             (every node then needs its new files): add --force to do it, or choose another --out",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
        return Ok(ExitCode::from(2));
    }
    if let Some(refusal) = unusable_out(&args.out, &targets) {
        eprintln!("error: {refusal}: nothing written");
        return Ok(ExitCode::from(2));
    }
    let files = generate(&args).context("making the certificates")?;
    // An existing directory is used as it is (checked private above), never chmodded: `--out .`
    // must not change the mode of someone's project or home directory.
    if args.out.symlink_metadata().is_err() {
        foundation_core::files::create_private_dir(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
    }
    let dir = std::fs::canonicalize(&args.out).with_context(|| format!("reading {}", args.out.display()))?;
    for target in &targets {
        let path = dir.join(&target.name);
        if args.force && path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path).with_context(|| format!("replacing {}", path.display()))?;
        }
        let text = files
            .get(&target.name)
            .ok_or_else(|| anyhow::anyhow!("{} was not generated (a bug)", target.name))?;
        let mode = if target.private { 0o600 } else { 0o644 };
        write_new(&path, text, mode).with_context(|| format!("writing {}", path.display()))?;
    }
    print_config(&args, &dir);
    Ok(ExitCode::SUCCESS)
}

/// What to do with the files: each node's `[cluster.tls]`, and the variables for the tools.
fn print_config(args: &CertsArgs, dir: &Path) {
    let ca = dir.join("ca.pem");
    println!(
        "wrote {} files in {} (CA, {} node{}, tools), valid for {} days.",
        targets(&args.nodes).len(),
        dir.display(),
        args.nodes.len(),
        if args.nodes.len() == 1 { "" } else { "s" },
        args.days
    );
    println!(
        "Give each node its own two files and ca.pem; keep ca-key.pem off the nodes (it makes new members).\n\
         A node's certificate names it: a node started under another name is refused.\n"
    );
    for node in &args.nodes {
        println!("# {node}");
        println!("[cluster.tls]");
        println!("cert = {}", toml_path(&dir.join(format!("{node}.pem"))));
        println!("key = {}", toml_path(&dir.join(format!("{node}-key.pem"))));
        println!("ca = {}", toml_path(&ca));
        println!("server_name = {}", toml::Value::String(args.server_name.clone()));
        println!();
    }
    println!(
        "# The tools (`foundation cluster status`, `cluster remove`): they read [cluster.tls] from the \
         configuration,\n# `--config FILE` (or FOUNDATION_CONFIG) and FOUNDATION_* variables, like a node:"
    );
    for (key, value) in [
        ("CERT", dir.join("tools.pem").display().to_string()),
        ("KEY", dir.join("tools-key.pem").display().to_string()),
        ("CA", ca.display().to_string()),
        ("SERVER_NAME", args.server_name.clone()),
    ] {
        println!("export FOUNDATION_CLUSTER__TLS__{key}={}", shell_quote(&value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_since_1970_are_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    fn args(nodes: &[&str]) -> CertsArgs {
        CertsArgs {
            out: PathBuf::from("unused"),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            server_name: "foundation-node".into(),
            days: 825,
            force: false,
        }
    }

    #[test]
    fn names_that_cannot_be_certified_or_collide_are_refused_with_the_name() {
        assert!(check(&args(&["n1", "n2", "ext-1"])).is_ok());
        for (nodes, expected) in [
            (&[""][..], "no node name"),
            (&["n1", "a.b"][..], "`a.b`"),
            (&["n1", "n1"][..], "`n1` is listed twice"),
            (&["n1", "N1"][..], "`N1` cannot be named"),
            (&["status-1"][..], "observers"),
            (&["ca"][..], "ca.pem"),
            (&["tools"][..], "tools.pem"),
            (&["x", "x-key"][..], "x-key.pem"),
        ] {
            let e = check(&args(nodes)).unwrap_err();
            assert!(e.contains(expected), "{nodes:?}: {e}");
        }
        let mut bad = args(&["n1"]);
        bad.server_name = "10.0.0.1".into();
        assert!(check(&bad).unwrap_err().contains("--server-name"));
    }

    #[test]
    fn every_target_is_generated() {
        let args = args(&["n1", "n2"]);
        let files = generate(&args).unwrap();
        for target in targets(&args.nodes) {
            let text = &files[&target.name];
            let kind = if target.private { "PRIVATE KEY" } else { "CERTIFICATE" };
            assert!(text.starts_with(&format!("-----BEGIN {kind}-----")), "{}: {text}", target.name);
        }
        assert_eq!(files.len(), 8);
    }
}
