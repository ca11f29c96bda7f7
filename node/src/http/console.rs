//! The web console: one HTML page, a script and a style sheet, embedded in
//! the binary (no CDN, no build step: plain JavaScript drawing SVG). The
//! page polls `/api/v1/console` twice a second and draws the mesh as this
//! router sees it: routers on a circle (legible at 100), links with their
//! costs, client and address counts, and for a selected address the path
//! its messages take (closest), the routers with consumers and the
//! deliveries this router sent to each neighbour for it.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
