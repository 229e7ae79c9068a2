//! Token keys through the real server: RS256 and ES256 with a public key, production refusing
//! development key material, and the query-parameter token only when enabled.

use std::path::PathBuf;
use std::time::Duration;

use carebridge::auth::{AuthSettings, Environment, Role, TokenAlgorithm, TokenKeys};
use carebridge::startup::Application;

use crate::helpers::{Client, repo, spawn_app, test_settings};

fn key(name: &str) -> Option<PathBuf> {
    Some(repo().join("tests/fixtures/keys").join(name))
}

async fn status(port: u16, path: &str, token: Option<&str>) -> u16 {
    match Client::connect(port, path, token).await {
        Ok(client) => {
            client.close().await;
            101
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn a_server_with_a_public_key_accepts_only_tokens_signed_by_its_pair() {
    for (algorithm, stem) in [
        (TokenAlgorithm::Rs256, "rs256"),
        (TokenAlgorithm::Es256, "es256"),
    ] {
        let mut settings = test_settings();
        settings.environment = Environment::Production;
        settings.auth = AuthSettings {
            algorithm,
            public_key_file: key(&format!("{stem}-public.pem")),
            ..AuthSettings::default()
        };
        let app = spawn_app(settings.clone()).await;
        // The identity provider's side: it holds the private key.
        let provider = TokenKeys::from_settings(
            &AuthSettings {
                private_key_file: key(&format!("{stem}-private.pem")),
                ..settings.auth.clone()
            },
            Environment::Development,
        )
        .expect("provider keys");
        let token = provider
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        assert_eq!(status(app.port, "/v1/chat", Some(&token)).await, 101);

        let forged = TokenKeys::hs256("guessable", "carebridge", "carebridge")
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        assert_eq!(status(app.port, "/v1/chat", Some(&forged)).await, 401);
    }
}

#[tokio::test]
async fn production_refuses_to_start_on_development_key_material() {
    let mut settings = test_settings();
    settings.environment = Environment::Production;
    let refused = Application::build(settings)
        .await
        .err()
        .expect("no server on a development secret");
    assert!(
        refused
            .to_string()
            .contains("production needs real key material"),
        "{refused}"
    );

    // The binary says so and exits, before serving anything.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_carebridge"))
        .env("CAREBRIDGE_ENVIRONMENT", "production")
        .env("CAREBRIDGE_SERVER__PORT", "0")
        .env("CAREBRIDGE_POLICIES__DIR", repo().join("policies"))
        .env("CAREBRIDGE_PROMPTS_DIR", repo().join("prompts"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("real key material"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("token"),
        "no tokens printed"
    );
}

#[tokio::test]
async fn a_query_parameter_token_works_only_when_enabled() {
    let app = spawn_app(test_settings()).await;
    let token = app.token("p1", Role::Patient);
    let path = format!("/v1/chat?access_token={token}");
    assert_eq!(status(app.port, &path, None).await, 401);

    let mut settings = test_settings();
    settings.auth.allow_query_token = true;
    let app = spawn_app(settings).await;
    assert_eq!(status(app.port, &path, None).await, 101);
}

/// Every route and socket against every role: only its own role gets in.
#[tokio::test]
async fn every_route_refuses_the_wrong_role_and_no_token() {
    let app = spawn_app(test_settings()).await;
    let session = "0123456789abcdef0123456789abcdef";
    let routes: [(&str, String, Role); 8] = [
        ("GET", "/v1/nurse/queue".into(), Role::Nurse),
        ("GET", "/v1/admin/policies".into(), Role::Operator),
        ("POST", "/v1/admin/policies/reload".into(), Role::Operator),
        ("POST", "/v1/admin/policies/dry-run".into(), Role::Operator),
        ("GET", "/v1/admin/rules/outcomes".into(), Role::Operator),
        ("GET", "/v1/admin/audit".into(), Role::Operator),
        ("GET", "/v1/admin/audit/verify".into(), Role::Operator),
        (
            "GET",
            format!("/v1/admin/sessions/{session}/model-request"),
            Role::Operator,
        ),
    ];
    let http = reqwest::Client::new();
    for (method, path, allowed) in &routes {
        for role in [Role::Patient, Role::Nurse, Role::Operator] {
            let mut request = match *method {
                "POST" => http
                    .post(app.url(path))
                    .header("content-type", "application/json")
                    .body(r#"{"text":"hello"}"#),
                _ => http.get(app.url(path)),
            };
            request = request.bearer_auth(app.token("someone", role));
            let status = request.send().await.expect("answers").status().as_u16();
            if role == *allowed {
                assert!(status < 400, "{method} {path} as {role:?}: {status}");
            } else {
                assert_eq!(status, 403, "{method} {path} as {role:?}");
            }
        }
        let anonymous = match *method {
            "POST" => http.post(app.url(path)),
            _ => http.get(app.url(path)),
        };
        assert_eq!(
            anonymous.send().await.expect("answers").status().as_u16(),
            401,
            "{method} {path} without a token"
        );
    }
    for (path, allowed) in [("/v1/chat", Role::Patient), ("/v1/nurse", Role::Nurse)] {
        for role in [Role::Patient, Role::Nurse, Role::Operator] {
            let expected = if role == allowed { 101 } else { 403 };
            assert_eq!(
                status(app.port, path, Some(&app.token("someone", role))).await,
                expected,
                "{path} as {role:?}"
            );
        }
        assert_eq!(status(app.port, path, None).await, 401, "{path} anonymous");
    }
}

#[tokio::test]
async fn an_expired_token_is_refused_at_the_upgrade() {
    let app = spawn_app(test_settings()).await;
    let expired = app
        .keys
        .mint("p1", Role::Patient, Duration::from_secs(0))
        .expect("mint");
    // Past the verifier's leeway.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(status(app.port, "/v1/chat", Some(&expired)).await, 401);
}
