//! Compile-time guarantees of `#[video_model]`: each case in `tests/ui/<topic>/` must fail
//! to compile with exactly the `.stderr` beside it (toolchain pinned, so the snapshots are
//! stable). Cases are built, not just checked (see the pass case). Regenerate with
//! `TRYBUILD=overwrite cargo test --test macro_ui`.

#[test]
fn ui() {
    // trybuild builds the cases in a project of its own, compiling every dependency again
    // with cargo's default `dev` profile; its full debug info is most of that build's
    // time and no case needs it (the expected output is the compiler's errors).
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "0");
    // trybuild first builds the dependencies with its base flags, then the cases with one
    // flag more (`--diagnostic-width=140`): rustflags differ, so cargo compiled every
    // dependency (dfdx, the facade) twice. The environment's flags take precedence over
    // trybuild's `--config` ones; giving both builds the same flags (trybuild's own, the
    // width included) builds the dependencies once: 73 s -> 47 s cold.
    std::env::set_var(
        "CARGO_ENCODED_RUSTFLAGS",
        ["--cfg", "trybuild", "--verbose", "-A", "dead_code", "--diagnostic-width=140"].join("\x1f"),
    );
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/spec/*.rs");
    t.compile_fail("tests/ui/shapes/*.rs");
    // A passing case makes trybuild run `cargo build` instead of `cargo check` for all
    // cases: const assertions are only evaluated by a build.
    t.pass("tests/ui/pass/*.rs");
}
