//! The three services. Each owns one database and reaches the others only through events.

pub mod inventory;
pub mod orders;
pub mod payments;

use std::net::SocketAddr;

use axum::Router;

/// Serves `router` (plus `/healthz`) on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, router: Router) -> crate::Result<()> {
    let router = router.route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// An HTTP error response for a failed request.
pub struct ApiError(pub axum::http::StatusCode, pub String);

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        crate::Error::from(e).into()
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Runs the consumer tasks and the HTTP server; returns when any of them fails.
pub async fn run_all(tasks: Vec<tokio::task::JoinHandle<crate::Result<()>>>) -> crate::Result<()> {
    let (res, _, _) = futures::future::select_all(tasks).await;
    match res {
        Ok(r) => r,
        Err(e) => Err(crate::Error::Setup(format!("task panicked: {e}"))),
    }
}
