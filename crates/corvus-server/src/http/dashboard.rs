//! The live dashboard (`/dashboard/`): one HTML page, its script and its style sheet, built
//! into the binary so that a broker needs no files beside it and no build step exists.
//!
//! The page is plain HTML and JavaScript that polls the admin API (`/api/v1/stats` every
//! second, `/api/v1/topics/top` and `/api/v1/clients` every few seconds) and draws what it
//! gets: headline figures, message rate and connection charts, the busiest topics, the
//! client list with a search box, drop counters by reason. Nothing it loads comes from
//! elsewhere (no CDN, no web font): operators often open it on machines without internet.
//!
//! The files themselves say nothing secret and are served without the bearer token; the
//! page asks for the token (from `#token=...` in its address, or a form on a 401) and sends
//! it with each API call. `tests/dashboard_browser.rs` loads it in headless Chromium
//! against a broker with traffic.

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// The dashboard file at a request path: `(content type, body)`, or `None` for any other
/// path. The page's own references are relative (`app.js`, `../api/v1/`), so `/dashboard`
/// without its slash should be redirected to `/dashboard/` rather than answered here.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/dashboard/" | "/dashboard/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/dashboard/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/dashboard/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_has_its_path_and_type() {
        let html = asset("/dashboard/").expect("the page");
        assert!(html.0.starts_with("text/html"));
        assert!(html.1.starts_with("<!doctype html>"));
        assert_eq!(asset("/dashboard/index.html"), Some(html));
        let js = asset("/dashboard/app.js").expect("the script");
        assert!(js.0.starts_with("text/javascript"));
        let css = asset("/dashboard/style.css").expect("the style sheet");
        assert!(css.0.starts_with("text/css"));
        // The page loads exactly these, relative to itself.
        assert!(html.1.contains(r#"src="app.js""#));
        assert!(html.1.contains(r#"href="style.css""#));
        for other in [
            "/dashboard",
            "/dashboard/../Cargo.toml",
            "/dashboard/x.js",
            "/",
        ] {
            assert_eq!(asset(other), None, "{other}");
        }
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for (name, body) in [("html", INDEX_HTML), ("js", APP_JS), ("css", STYLE_CSS)] {
            assert!(!body.contains("https://"), "{name} names an https address");
            // The SVG namespace is a name, not an address the browser fetches.
            let http = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!http.contains("http://"), "{name} names an http address");
            assert!(!body.contains("@import"), "{name} imports a style sheet");
        }
    }

    #[test]
    fn every_element_the_script_looks_up_is_on_the_page() {
        // The script finds elements with `$('id')`: an id renamed on one side only would
        // break the page silently, with no error until someone looks.
        let mut looked_up = 0;
        for part in APP_JS.split("$('").skip(1) {
            let id = part.split('\'').next().unwrap_or_default();
            assert!(
                INDEX_HTML.contains(&format!(r#"id="{id}""#)),
                "app.js looks up #{id}, which index.html lacks"
            );
            looked_up += 1;
        }
        assert!(looked_up > 20, "only {looked_up} lookups found");
    }
}
