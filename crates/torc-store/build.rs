//! Tells the test suite whether to run its PostgreSQL variants: when `TORC_TEST_POSTGRES_URL`
//! is set, or in CI (`CI=true`), where a missing URL must fail the tests rather than skip them.
//! Otherwise they are marked ignored, so that `cargo test` reports them as not run.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rerun-if-env-changed=TORC_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(torc_postgres_tests)");
    let url = std::env::var_os("TORC_TEST_POSTGRES_URL").is_some_and(|u| !u.is_empty());
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if url || ci {
        println!("cargo::rustc-cfg=torc_postgres_tests");
    }
}
