//! The dashboard at `/`: a page and its scripts, embedded in the binary at build time (no
//! CDN; it works offline), reading the REST API under `/api/v1`. Charts are drawn by uPlot,
//! vendored under `assets/vendor/` (see its README there). With ACL on, the page asks for an
//! admin account and signs each request in the browser (WebCrypto HMAC-SHA1); the secret
//! never leaves the page.

use actix_web::{web, HttpResponse};

/// (name, content type, bytes) of every asset under `/dashboard/`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.min.css"),
    ),
];

const INDEX: &str = include_str!("assets/index.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/dashboard/{asset}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        // Its own scripts only, and no framing by other sites.
        .insert_header((
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .body(INDEX)
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, kind, bytes)) => HttpResponse::Ok()
            .content_type(*kind)
            .insert_header(("cache-control", "max-age=3600"))
            .body(*bytes),
        None => HttpResponse::NotFound().body("no such dashboard asset"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        let mut linked = 0;
        for src in INDEX
            .split("src=\"")
            .skip(1)
            .chain(INDEX.split("href=\"").skip(1))
        {
            let url = src.split('"').next().unwrap_or_default();
            if url.starts_with('#') {
                continue; // a view of the page itself
            }
            // Relative, so the page works wherever an embedding application mounts it.
            let name = url
                .strip_prefix("dashboard/")
                .unwrap_or_else(|| panic!("not an embedded asset: {url}"));
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
            linked += 1;
        }
        assert_eq!(linked, ASSETS.len(), "every embedded asset is linked once");
        let total: usize = INDEX.len() + ASSETS.iter().map(|(_, _, b)| b.len()).sum::<usize>();
        assert!(total < 1 << 20, "first load {total} bytes");
    }
}
