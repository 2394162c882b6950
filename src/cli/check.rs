//! `outpost check`: prints what [`crate::check`] finds, problems then
//! warnings, as `file:line:col: message` lines; fails on any problem.

use std::path::Path;
use std::process::ExitCode;

pub fn run(root: &Path) -> ExitCode {
    let report = crate::check::check(root);
    for p in &report.problems {
        println!("{p}");
    }
    for w in &report.warnings {
        println!(
            "{}:{}:{}: warning: {}",
            w.file.display(),
            w.line,
            w.col,
            w.message
        );
    }
    if report.problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s)", report.problems.len());
        ExitCode::FAILURE
    }
}
