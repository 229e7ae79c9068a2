//! The shipped policy set, loaded once per fuzzing process: loading compiles every phrase and
//! runs every policy file's tests, which takes seconds, and each input needs only microseconds.

use std::path::Path;
use std::sync::LazyLock;

use carebridge::policy::PolicySet;
use carebridge::prompts::{Prompts, Region};

static SHIPPED: LazyLock<PolicySet> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let prompts = Prompts::load(&root.join("prompts"), Region::Uk)
        .unwrap_or_else(|error| panic!("prompts/ does not load: {error}"));
    PolicySet::load_tested(&root.join("policies"), &prompts)
        .unwrap_or_else(|error| panic!("the shipped policy set does not load: {error}"))
});

pub fn policy_set() -> &'static PolicySet {
    &SHIPPED
}
