//! HTTP routes and WebSocket loops. Handlers hold no state beyond their socket; the truth is in
//! the store.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
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
    pub limits: Arc<crate::limits::Limits>,
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
    #[error(transparent)]
    Limited(#[from] crate::limits::Refusal),
    #[error("pages from {0} may not open this socket (server.allowed_origins)")]
    Origin(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Auth(AuthError::WrongRole { .. }) => StatusCode::FORBIDDEN,
            Self::Auth(AuthError::Sign(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Origin(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Self::Limited(refusal) = self
            && let Some(wait_ms) = refusal.retry_after_ms()
        {
            response.insert_header(("Retry-After", wait_ms.div_ceil(1000).to_string()));
            metrics::counter!("carebridge_rate_limited_total", "what" => "connection").increment(1);
            return response.json(serde_json::json!({
                "error": self.to_string(),
                "retry_after_ms": wait_ms,
            }));
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// The caller's verified claims, with the role required.
///
/// # Errors
/// No token, a bad token, or the wrong role.
pub fn authorize(request: &HttpRequest, state: &AppState, role: Role) -> Result<Claims, ApiError> {
    let token = auth::token_from_request(request, state.services.settings.auth.allow_query_token)?;
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

/// A socket that may open: its caller, their address, and its place under the limits.
pub struct Admitted {
    pub claims: Claims,
    pub address: std::net::IpAddr,
    pub permit: crate::limits::SocketPermit,
}

/// Checks a WebSocket upgrade: the page's origin, the token and role, then the connection
/// limits (after the token, so an anonymous flood cannot use up a patient's places).
///
/// # Errors
/// A foreign origin, a bad token or role, or a limit hit.
pub fn admit_socket(
    request: &HttpRequest,
    state: &AppState,
    role: Role,
) -> Result<Admitted, ApiError> {
    let settings = &state.services.settings;
    if let Some(origin) = request.headers().get(actix_web::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let host = request
            .headers()
            .get(actix_web::http::header::HOST)
            .and_then(|host| host.to_str().ok());
        if !origin_allowed(origin, host, &settings.server.allowed_origins) {
            metrics::counter!("carebridge_origin_refusals_total").increment(1);
            return Err(ApiError::Origin(origin.to_owned()));
        }
    }
    let claims = authorize(request, state, role)?;
    let address =
        crate::limits::client_address(request, state.limits.settings().trust_forwarded_for);
    let permit = state.limits.admit_socket(&claims.sub, address)?;
    Ok(Admitted {
        claims,
        address,
        permit,
    })
}

/// Admits a WebSocket upgrade, then runs `serve` on the socket as a task of this worker (the
/// inbound stream is tied to the worker's thread), tracked for shutdown and counted in
/// `carebridge_open_sockets`. The socket keeps its place under the limits until `serve` ends.
///
/// # Errors
/// Refused by [`admit_socket`], or not a WebSocket handshake.
pub fn upgrade<Serve, Served>(
    request: &HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    role: Role,
    frame_cap: usize,
    serve: Serve,
) -> Result<HttpResponse, actix_web::Error>
where
    Serve: FnOnce(
            Arc<AppState>,
            Claims,
            std::net::IpAddr,
            actix_ws::Session,
            actix_ws::AggregatedMessageStream,
        ) -> Served
        + 'static,
    Served: std::future::Future<Output = ()> + 'static,
{
    let admitted = admit_socket(request, &state, role)?;
    let (response, session, stream) =
        actix_ws::handle_with_protocols(request, body, &[chat::SUBPROTOCOL])?;
    let inbound = stream
        .max_frame_size(frame_cap)
        .aggregate_continuations()
        .max_continuation_size(frame_cap);
    let state = state.into_inner();
    let label = match role {
        Role::Patient => "patient",
        Role::Nurse => "nurse",
        Role::Operator => "operator",
    };
    metrics::gauge!("carebridge_open_sockets", "role" => label).increment(1.0);
    let tracker = state.sockets.clone();
    tracker.spawn_local(async move {
        let Admitted {
            claims,
            address,
            permit,
        } = admitted;
        serve(state, claims, address, session, inbound).await;
        drop(permit);
        metrics::gauge!("carebridge_open_sockets", "role" => label).decrement(1.0);
    });
    Ok(response)
}

/// Whether a browser page at `origin` may open a socket: listed, `*`, or (with an empty list)
/// served by this host.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        return host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host));
    }
    allowed.iter().any(|entry| {
        entry == "*"
            || entry
                .trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    })
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
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is read only after the caller is known: no token, no parsing.
    admin(&request, &state, "policy_dry_run", None).await?;
    let body: DryRun = serde_json::from_slice(&body)
        .map_err(|error| ApiError::BadRequest(format!("expected {{\"text\": …}}: {error}")))?;
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

/// The whole audit trail as JSON lines (what `carebridge audit export` writes), streamed a page
/// at a time. A store failure part-way ends the transfer without its last chunk, so the client
/// sees a broken download rather than a short trail that looks complete.
async fn audit_export(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    admin(&request, &state, "audit_export", None).await?;
    let audit = &state.services.audit;
    // The export should include the entry that records it.
    audit.flush(std::time::Duration::from_secs(5)).await;
    let pages = crate::audit::export_pages(Arc::clone(audit.backend())).map(|page| {
        page.map(|page| web::Bytes::from(page.json_lines))
            .inspect_err(|error| tracing::error!(error = %error, "audit export stopped part-way"))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(pages))
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

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn without_a_list_only_the_servers_own_pages_may_connect() {
        assert!(origin_allowed(
            "http://127.0.0.1:8080",
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            "http://127.0.0.1:9999",
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed("null", Some("127.0.0.1:8080"), &[]));
    }

    #[test]
    fn a_list_names_the_origins_allowed() {
        let allowed = vec!["https://app.example.org".to_owned()];
        assert!(origin_allowed(
            "https://app.example.org",
            Some("api.example.org"),
            &allowed
        ));
        assert!(origin_allowed("https://APP.example.org/", None, &allowed));
        assert!(!origin_allowed(
            "https://app.example.org.evil.example",
            None,
            &allowed
        ));
        assert!(!origin_allowed("http://app.example.org", None, &allowed));
        assert!(origin_allowed(
            "https://anything.example",
            None,
            &["*".to_owned()]
        ));
    }
}
