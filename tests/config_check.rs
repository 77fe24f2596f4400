//! `ccr check` on the seed configs and on every bad config under `config/invalid/`, through the
//! real binary: each bad file fails with its own path-naming message.

use std::path::Path;
use std::process::Command;

fn ccr_check(path: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["check", "--config", path])
        .env_remove("CCR_CONFIG")
        .output()
        .expect("run ccr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn seed_configs_pass_and_print_the_table() {
    for path in ["config/codewhisperer-load-balancing.json", "config/use-case-3-minimal.json"] {
        let (ok, stdout, stderr) = ccr_check(path);
        assert!(ok, "{path} failed: {stderr}");
        assert!(stdout.contains("Routing"), "{stdout}");
        assert!(stdout.contains("weighted-round-robin"), "{stdout}");
        assert!(stdout.contains("codewhisperer-primary (70), codewhisperer-secondary (30)"), "{stdout}");
        assert!(stdout.contains("CLAUDE_SONNET_4_20250514_V1_0"), "{stdout}");
        assert!(stdout.contains(&format!("OK: {path} is valid")), "{stdout}");
    }
    // The example config names `/health` on the real Kiro API, which serves none: the usage
    // probe is used instead, and `check` says so once per account.
    let (_, stdout, _) = ccr_check("config/codewhisperer-load-balancing.json");
    assert!(stdout.contains("warning: providers.codewhisperer-primary.healthCheck.endpoint: the Kiro API serves no /health: health checks use the authenticated usage probe (getUsageLimits) instead"), "{stdout}");
    assert!(
        stdout.contains("probe getUsageLimits (the usage probe; the Kiro API serves no /health)"),
        "{stdout}"
    );
}

#[test]
fn seed_config_is_the_seed_block_byte_for_byte() {
    // The embedded default and config/ copy are the same bytes: the seed's second JSON block.
    let file = std::fs::read_to_string("config/codewhisperer-load-balancing.json").unwrap();
    assert_eq!(file, ccr::config::DEFAULT_CONFIG);
    assert!(file.contains("\"description\": \"CodeWhisperer供应商负载均衡配置\""));
}

/// Each invalid config and the exact message it must produce.
const INVALID: &[(&str, &str)] = &[
    (
        "all-zero-weights",
        "routing.rules.default.loadBalancing.weights: every provider of this rule has weight 0: nothing could ever be picked",
    ),
    (
        "endpoint-not-url",
        "providers.codewhisperer-primary.endpoint: must be an http:// or https:// URL (got `q.us-east-1.amazonaws.com`)",
    ),
    (
        "fallback-unknown-provider",
        "routing.rules.longcontext.loadBalancing.fallback: provider `codewhisperer-spare` is not defined under `providers` (defined: codewhisperer-primary, codewhisperer-secondary)",
    ),
    (
        "fallback-without-single",
        "routing.rules.default.loadBalancing.fallback: only applies to the `single` strategy (this rule uses `weighted-round-robin`)",
    ),
    ("invalid-port", "server.port: must be between 1 and 65535 (got 70000)"),
    (
        "max-concurrent-zero",
        "providers.codewhisperer-secondary.maxConcurrentRequests: must be at least 1 (got 0)",
    ),
    ("misspelt-key", "providers.codewhisperer-primary.wieght: unknown key `wieght`; did you mean `weight`?"),
    (
        "negative-weight",
        "routing.rules.default.loadBalancing.weights.codewhisperer-secondary: must not be negative (got -30)",
    ),
    ("no-default-rule", "routing.rules: no `default` rule: requests that match no other category need one"),
    ("retries-below-one", "providers.codewhisperer-primary.healthCheck.retries: must be at least 1 (got 0)"),
    ("syntax-error", "invalid JSON at line 110, column 20: key must be a string"),
    (
        "threshold-below-one",
        "providers.codewhisperer-primary.circuitBreaker.failureThreshold: must be at least 1 (got 0)",
    ),
    (
        "timeout-not-shorter-than-interval",
        "providers.codewhisperer-secondary.healthCheck.timeout: must be shorter than interval (30000 ms >= 30000 ms)",
    ),
    (
        "undefined-provider",
        "routing.rules.thinking.providers[1]: provider `codewhisperer-tertiary` is not defined under `providers` (defined: codewhisperer-primary, codewhisperer-secondary)",
    ),
    (
        "unknown-auth-method",
        "providers.codewhisperer-primary.authMethod: unknown auth method `kiro-tokn`; did you mean `kiro-token`?",
    ),
    ("unknown-category", "routing.rules.thinkng: unknown category `thinkng`; did you mean `thinking`?"),
    (
        "unknown-strategy",
        "routing.rules.background.loadBalancing.strategy: unknown strategy `round-robbin`; did you mean `round-robin`?",
    ),
    ("unsupported-format", "input.format: unsupported format `openai`; only `anthropic` is spoken"),
    (
        "weights-unknown-provider",
        "routing.rules.default.loadBalancing.weights.codewhisperer-backup: provider `codewhisperer-backup` is not defined under `providers` (defined: codewhisperer-primary, codewhisperer-secondary)",
    ),
    (
        "wrong-type",
        "providers.codewhisperer-secondary.maxConcurrentRequests: invalid type: string \"eight\", expected a whole number",
    ),
];

#[test]
fn every_invalid_config_fails_with_its_message() {
    let mut on_disk: Vec<String> = std::fs::read_dir("config/invalid")
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<String> = INVALID.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(on_disk, listed, "config/invalid/ and the INVALID table must list the same files");

    for (name, expected) in INVALID {
        let path = format!("config/invalid/{name}.json");
        assert!(Path::new(&path).is_file());
        let (ok, stdout, stderr) = ccr_check(&path);
        assert!(!ok, "{path} passed:\n{stdout}");
        let mut lines = stderr.lines();
        assert_eq!(lines.next(), Some(format!("error: {path}: 1 problem").as_str()), "{stderr}");
        assert_eq!(lines.next().map(str::trim), Some(*expected), "{path}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, _, stderr) = ccr_check("config/does-not-exist.json");
    assert!(!ok);
    assert!(stderr.starts_with("error: config/does-not-exist.json: cannot read:"), "{stderr}");
}
