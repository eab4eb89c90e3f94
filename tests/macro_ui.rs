//! Compile-time guarantees of `#[video_model]`: each case in `tests/ui/<topic>/` must fail
//! to compile with exactly the `.stderr` beside it (toolchain pinned, so the snapshots are
//! stable). Regenerate with `TRYBUILD=overwrite cargo test --test macro_ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/spec/*.rs");
    t.compile_fail("tests/ui/shapes/*.rs");
}
