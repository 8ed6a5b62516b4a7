//! Compile errors of `#[dsss::shared_object]` and `#[dsss::methods]`: each file in tests/ui is a
//! mistake a user can make, and its `.stderr` the message the user gets, pointing at the code
//! to fix. Regenerate the messages with `TRYBUILD=overwrite` and read every one.

#[test]
fn mistakes_in_shared_objects_are_compile_errors_at_their_source() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
