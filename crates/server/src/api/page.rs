//! `GET /`: the operator's page (DESIGN §6): the ring drawn as a circle by
//! owner, the pending plan drawn on it, the summary, the members and the
//! endpoints outside the ring, live from `GET /v1/watch`.
//!
//! One self-contained HTML document, embedded in the binary: no CDN, no
//! build step. Its script and style live in `page/app.js` and
//! `page/app.css` (readable, lintable) and are inlined into
//! `page/index.html` once, at first use; the Content-Security-Policy allows
//! exactly those two by their SHA-256, and nothing but same-origin
//! `fetch`, so the page can run no other script even if some data it shows
//! were hostile.
//!
//! The page itself holds no data and is served without a token. It reads
//! the API with `fetch`, sending `Authorization: Bearer` when the operator
//! has typed a read token (kept in `sessionStorage`, gone with the tab).
//! The watch stream is read with `fetch` too, not `EventSource`, which can
//! send no header: a token in the query string would end up in access logs,
//! proxies and the browser history.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::sync::LazyLock;

const TEMPLATE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// The assembled document and its Content-Security-Policy.
struct Page {
    html: String,
    csp: HeaderValue,
}

fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let html = TEMPLATE
        .replacen("/*STYLE*/", STYLE, 1)
        .replacen("/*SCRIPT*/", SCRIPT, 1);
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(SCRIPT),
        sha256_source(STYLE)
    );
    Page {
        html,
        csp: HeaderValue::from_str(&csp).expect("base64 and ASCII make a valid header"),
    }
});

/// `GET /`.
pub async fn index() -> Response {
    let page = &*PAGE;
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, page.csp.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        page.html.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_script_and_style_and_allows_only_them() {
        let page = &*PAGE;
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*STYLE*/"));
        assert!(page.html.contains(SCRIPT) && page.html.contains(STYLE));
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&sha256_source(SCRIPT)), "{csp}");
        assert!(csp.contains(&sha256_source(STYLE)), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // Nothing loaded from elsewhere.
        let html = page.html.replace("href=\"data:,\"", "");
        for needle in ["src=", "href=", "url(", "@import"] {
            assert!(
                !html.contains(needle),
                "the page must be self-contained: found {needle:?}"
            );
        }
    }
}
