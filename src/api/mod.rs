//! HTTP routes and WebSocket loops. Handlers hold no state beyond their socket; the truth is in
//! the store.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, AuthError, Claims, Role, TokenKeys};
use crate::session::conversation::Services;

mod chat;
mod nurse;

/// Shared by every handler of this replica.
pub struct AppState {
    pub services: Arc<Services>,
    pub keys: TokenKeys,
    pub metrics: Option<PrometheusHandle>,
    /// Cancelled when the server starts shutting down; sockets close with "going away".
    pub shutdown: CancellationToken,
    /// Every socket task, so shutdown can wait for them.
    pub sockets: TaskTracker,
}

/// Errors a route answers with, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("{0}")]
    BadRequest(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Auth(AuthError::WrongRole { .. }) => StatusCode::FORBIDDEN,
            Self::Auth(AuthError::Sign(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// The caller's verified claims, with the role required.
///
/// # Errors
/// No token, a bad token, or the wrong role.
pub fn authorize(request: &HttpRequest, state: &AppState, role: Role) -> Result<Claims, ApiError> {
    let token = auth::token_from_headers(request.headers())?;
    let claims = state.keys.verify(&token)?;
    auth::require(&claims, role)?;
    Ok(claims)
}

/// An operator's call to an admin route: checked, then recorded in the audit trail (refusals are
/// in the access logs and metrics, not the trail).
///
/// # Errors
/// Not an operator.
async fn admin(
    request: &HttpRequest,
    state: &AppState,
    what: &str,
    session: Option<&str>,
) -> Result<Claims, ApiError> {
    let claims = authorize(request, state, Role::Operator)?;
    state
        .services
        .audit
        .record(
            crate::audit::Action::AdminAction,
            &crate::audit::Actor::from(&claims),
            session,
            serde_json::json!({ "action": what }),
        )
        .await;
    Ok(claims)
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/", web::get().to(patient_page))
        .route("/nurse", web::get().to(nurse_page))
        .route("/v1/chat", web::get().to(chat::chat))
        .route("/v1/nurse", web::get().to(nurse::nurse))
        .route("/v1/nurse/queue", web::get().to(nurse_queue))
        .route("/v1/admin/rules/outcomes", web::get().to(rule_outcomes))
        .route("/v1/admin/policies", web::get().to(policy_status))
        .route("/v1/admin/policies/reload", web::post().to(policy_reload))
        .route("/v1/admin/policies/dry-run", web::post().to(policy_dry_run))
        .route("/v1/admin/audit", web::get().to(audit_export))
        .route("/v1/admin/audit/verify", web::get().to(audit_verify))
        .route(
            "/v1/admin/sessions/{session}/model-request",
            web::get().to(model_request_preview),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::NotReady("shutting down".into()));
    }
    state
        .services
        .store
        .ping()
        .await
        .map_err(|error| ApiError::NotReady(error.to_string()))?;
    let policies = state.services.policies.status();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "policy_version": policies.version,
    })))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match &state.metrics {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(handle.render()),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn policy_status(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "policy_status", None).await?;
    Ok(HttpResponse::Ok().json(state.services.policies.status()))
}

async fn policy_reload(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let claims = admin(&request, &state, "policy_reload", None).await?;
    tracing::info!(operator = %claims.sub, "policy reload requested");
    match state.services.policies.reload().await {
        Ok(version) => Ok(
            HttpResponse::Ok().json(serde_json::json!({ "reloaded": true, "version": version }))
        ),
        Err(error) => Ok(HttpResponse::UnprocessableEntity().json(serde_json::json!({
            "reloaded": false,
            "error": error.to_string(),
            "status": state.services.policies.status(),
        }))),
    }
}

#[derive(Deserialize)]
struct DryRun {
    text: String,
    #[serde(default)]
    earlier: Vec<String>,
}

async fn policy_dry_run(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<DryRun>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "policy_dry_run", None).await?;
    if body.text.len() > state.services.settings.limits.max_message_bytes {
        return Err(ApiError::BadRequest(
            "text exceeds limits.max_message_bytes".into(),
        ));
    }
    let earlier: Vec<&str> = body.earlier.iter().map(String::as_str).collect();
    let explanation = state
        .services
        .policies
        .current()
        .explain(&body.text, &earlier);
    Ok(HttpResponse::Ok().json(explanation))
}

/// The patient demo page: try the whole flow on the embedded defaults.
async fn patient_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", PAGE_POLICY))
        .body(include_str!("../../static/patient.html"))
}

/// The nurse console.
async fn nurse_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", PAGE_POLICY))
        .body(include_str!("../../static/nurse.html"))
}

/// The pages load nothing from elsewhere: no CDN, no third-party script.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:";

async fn nurse_queue(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state, Role::Nurse)?;
    let queue = state
        .services
        .escalations
        .queue()
        .await
        .map_err(|error| ApiError::NotReady(error.to_string()))?;
    Ok(HttpResponse::Ok().json(queue))
}

/// Per rule, how nurses judged its flags: confirmed (emergency or urgent) and false alarms.
async fn rule_outcomes(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "rule_outcomes", None).await?;
    let counts = state
        .services
        .store
        .rule_outcomes()
        .await
        .map_err(|error| ApiError::NotReady(error.to_string()))?;
    let mut rules: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        std::collections::BTreeMap::new();
    for (rule, outcome, count) in counts {
        rules.entry(rule).or_default().insert(outcome, count.into());
    }
    let report: Vec<serde_json::Value> = rules
        .into_iter()
        .map(|(rule, outcomes)| {
            let get = |name: &str| outcomes.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let confirmed = get("emergency_confirmed") + get("urgent");
            let false_alarms = get("not_urgent");
            let judged = confirmed + false_alarms;
            serde_json::json!({
                "rule": rule,
                "outcomes": outcomes,
                "confirmed": confirmed,
                "false_alarms": false_alarms,
                "precision": if judged == 0 { serde_json::Value::Null } else { (confirmed as f64 / judged as f64).into() },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(report))
}

/// What the next model request for a session would carry, after redaction: the operator sees
/// exactly what would leave for the provider.
async fn model_request_preview(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = crate::session::SessionId::parse(&path.into_inner())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let claims = admin(
        &request,
        &state,
        "model_request_preview",
        Some(session.as_str()),
    )
    .await?;
    tracing::info!(operator = %claims.sub, session = %session, "model request previewed");
    let preview = crate::session::conversation::preview_request(&state.services, &session).await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "redacted": state.services.redactor.is_some(),
        "messages": preview.turns,
    })))
}

/// The whole audit trail as JSON lines (what `carebridge audit export` writes).
async fn audit_export(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "audit_export", None).await?;
    let audit = &state.services.audit;
    // The export should include the entry that records it.
    audit.flush(std::time::Duration::from_secs(5)).await;
    let mut out = Vec::new();
    crate::audit::export(audit.backend().as_ref(), &mut out)
        .await
        .map_err(|error| ApiError::NotReady(error.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .body(out))
}

/// Checks the trail's hash chain (what `carebridge audit verify` does).
async fn audit_verify(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "audit_verify", None).await?;
    let audit = &state.services.audit;
    audit.flush(std::time::Duration::from_secs(5)).await;
    let report = crate::audit::verify(audit.backend().as_ref())
        .await
        .map_err(|error| ApiError::NotReady(error.to_string()))?;
    Ok(HttpResponse::Ok().json(report))
}
