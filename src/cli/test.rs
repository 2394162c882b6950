//! `outpost test`: runs the rule cases of rules/tests/*.toml (see
//! [`crate::rule_tests`]), prints each failure and the tally; fails on any
//! failure.

use std::path::Path;
use std::process::ExitCode;

pub fn run(root: &Path) -> ExitCode {
    match crate::rule_tests::run(root) {
        Ok(report) => {
            for f in &report.failures {
                println!("{f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::FAILURE
        }
    }
}
