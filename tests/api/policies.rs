//! Policies in the running server: the shipped set passes its own tests, the dry run explains,
//! hot reload swaps a good set and refuses a broken one while the old set keeps answering.

use std::path::Path;
use std::time::Duration;

use carebridge::auth::Role;
use carebridge::policy::{PolicySet, testing};
use carebridge::prompts::{Prompts, Region};
use serde_json::{Value, json};

use crate::helpers::{TestApp, repo, spawn_app, test_settings};

#[test]
fn the_shipped_policy_set_passes_all_its_tests() {
    let prompts = Prompts::load(&repo().join("prompts"), Region::Uk).expect("prompts");
    let set = PolicySet::load(&repo().join("policies"), &prompts).expect("policies load");
    let report = testing::run(&set);
    assert!(report.is_success(), "{report}");
    assert!(
        report.passed > 100,
        "the shipped set carries its tests: {report}"
    );
}

async fn dry_run(app: &TestApp, text: &str) -> Value {
    let response = reqwest::Client::new()
        .post(app.url("/v1/admin/policies/dry-run"))
        .bearer_auth(app.token("op", Role::Operator))
        .header("content-type", "application/json")
        .body(json!({ "text": text }).to_string())
        .send()
        .await
        .expect("dry run");
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.expect("body")).expect("json")
}

async fn status(app: &TestApp) -> Value {
    let response = reqwest::Client::new()
        .get(app.url("/v1/admin/policies"))
        .bearer_auth(app.token("op", Role::Operator))
        .send()
        .await
        .expect("status");
    serde_json::from_str(&response.text().await.expect("body")).expect("json")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// A server reading its policies from `dir`, polling it every 100 ms.
async fn watching(dir: &Path) -> TestApp {
    let mut settings = test_settings();
    settings.policies.dir = dir.to_owned();
    settings.policies.watch_interval_ms = 100;
    spawn_app(settings).await
}

const NEW_POLICY: &str = r#"
[meta]
id = "zz_test"
title = "A rule added while the server runs"

[[rule]]
id = "zz_test.purple_spots"
severity = "urgent"
guidance = "urgent"
triggers = ["tangerine kazoo whistles"]

[[test]]
text = "I have tangerine kazoo whistles"
expect = "urgent"
rule = "zz_test.purple_spots"
"#;

/// Waits up to a minute: a reload compiles and tests the whole shipped set (4,000 cases), which
/// takes seconds in a debug build and longer on a machine shared with other tests.
async fn wait_for(app: &TestApp, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let current = status(app).await;
        if check(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("policy status never matched: {}", status(app).await);
}

#[tokio::test]
async fn hot_reload_swaps_a_good_set_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = dir.path().join("policies");
    copy_dir(&repo().join("policies"), &policies);
    let app = watching(&policies).await;
    let first = status(&app).await;
    assert_eq!(
        dry_run(&app, "I have tangerine kazoo whistles").await["decision"]["level"],
        "routine"
    );

    // A good change is compiled, tested and swapped in.
    std::fs::write(policies.join("zz_test.toml"), NEW_POLICY).expect("write");
    let second = wait_for(&app, |now| now["version"] != first["version"]).await;
    assert_eq!(
        dry_run(&app, "I have tangerine kazoo whistles").await["decision"]["level"],
        "urgent"
    );

    // A broken file is refused; the previous set keeps answering.
    std::fs::write(policies.join("zz_test.toml"), "[meta\nid = ").expect("write");
    let refused = wait_for(&app, |now| now["failed_reloads"] == 1).await;
    assert_eq!(refused["version"], second["version"]);
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("zz_test.toml")
    );
    assert_eq!(
        dry_run(&app, "I have tangerine kazoo whistles").await["decision"]["level"],
        "urgent"
    );

    // A set whose own tests fail is refused too.
    std::fs::write(
        policies.join("zz_test.toml"),
        NEW_POLICY.replace("expect = \"urgent\"", "expect = \"emergency\""),
    )
    .expect("write");
    let refused = wait_for(&app, |now| now["failed_reloads"] == 2).await;
    assert_eq!(refused["version"], second["version"]);
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("tests failed")
    );
    let emergency = dry_run(&app, "crushing chest pain spreading to my left arm").await;
    assert_eq!(emergency["decision"]["level"], "emergency");
}

/// The layout the Helm chart documents for a policy volume: each set in a directory of its own
/// and a link `current` to the one served, swapped in one rename.
#[cfg(unix)]
#[tokio::test]
async fn a_set_published_by_swapping_a_link_is_reloaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (first_set, second_set) = (dir.path().join("set-1"), dir.path().join("set-2"));
    copy_dir(&repo().join("policies"), &first_set);
    copy_dir(&repo().join("policies"), &second_set);
    std::fs::write(second_set.join("zz_test.toml"), NEW_POLICY).expect("write");
    let current = dir.path().join("current");
    std::os::unix::fs::symlink("set-1", &current).expect("link");

    let app = watching(&current).await;
    let first = status(&app).await;
    assert_eq!(
        dry_run(&app, "I have tangerine kazoo whistles").await["decision"]["level"],
        "routine"
    );

    let next = dir.path().join("next");
    std::os::unix::fs::symlink("set-2", &next).expect("link");
    std::fs::rename(&next, &current).expect("swap the link");
    wait_for(&app, |now| now["version"] != first["version"]).await;
    assert_eq!(
        dry_run(&app, "I have tangerine kazoo whistles").await["decision"]["level"],
        "urgent"
    );
}

#[tokio::test]
async fn admin_endpoints_refuse_other_roles() {
    let app = spawn_app(test_settings()).await;
    let response = reqwest::Client::new()
        .get(app.url("/v1/admin/policies"))
        .bearer_auth(app.token("p1", Role::Patient))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), 403);
    let anonymous = reqwest::get(app.url("/v1/admin/policies"))
        .await
        .expect("status");
    assert_eq!(anonymous.status(), 401);
}
