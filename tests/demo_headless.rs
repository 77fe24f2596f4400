//! `ccr demo --headless` as a user runs it: the real binary, simulated upstreams, synthetic
//! traffic, an outage of the primary in the middle, and no error answers.

use std::process::Command;

#[test]
fn headless_demo_survives_an_outage_without_error_answers() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["demo", "--headless", "--duration", "6", "--seed", "3", "--port", "0"])
        .env("CCR_LOG", "error")
        .output()
        .expect("run ccr demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("codewhisperer-primary: taken down"), "{stdout}");
    assert!(stdout.contains("codewhisperer-primary: brought back up"), "{stdout}");
    assert!(stdout.contains("PROVIDER"), "the status table is printed: {stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("traffic: ")).expect("a traffic summary");
    assert!(summary.contains(" 0 error answers"), "{summary}");
    let complete: u64 =
        summary.split(", ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!(complete >= 5, "{summary}");
    // The summary adds up: every request sent is counted in exactly one outcome.
    let numbers: Vec<u64> = summary
        .trim_start_matches("traffic: ")
        .split(", ")
        .map(|p| p.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 5, "{summary}");
    assert_eq!(numbers[0], numbers[1..].iter().sum::<u64>(), "{summary}");
    assert!(stdout.contains("export ANTHROPIC_AUTH_TOKEN=ccr"), "{stdout}");
    assert!(!stdout.contains("ANTHROPIC_API_KEY"), "{stdout}");
}
