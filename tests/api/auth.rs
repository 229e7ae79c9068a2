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
