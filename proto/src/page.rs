//! The one HTML page every browser-visible answer uses (the agent's own
//! pages, its error pages, the gateway's refusals), and the one escaper.

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// HTML that is already safe to insert (built from escaped parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Text, escaped.
    pub fn text(s: &str) -> Html {
        Html(escape(s))
    }

    /// Markup the caller built from escaped parts and fixed tags.
    pub fn trusted(s: String) -> Html {
        Html(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The pages' only style, inline: nothing a page loads leaves the machine.
const STYLE: &str = "<style>body{font-family:system-ui,sans-serif;max-width:52em;margin:1.5em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:.25em .8em .25em 0;vertical-align:top}\
.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em .8em}progress{width:12em}\
small{color:#666}</style>";

/// A whole page: `title` (text) in the tab and as the heading, `body`
/// (markup), and who answered (`padnet agent`, `padnet gateway`).
pub fn render(title: &str, body: &Html, by: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{t}</title>{STYLE}</head><body>\
         <h1>{t}</h1>{b}<p><small>{by}</small></p></body></html>\n",
        t = escape(title),
        b = body.as_str(),
        by = escape(by),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_can_break_out() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn pages_escape_title_and_text_bodies() {
        let p = render("<x>", &Html::text("a \"b\" <script>"), "padnet agent");
        assert!(p.contains("<title>&lt;x&gt;</title>"));
        assert!(p.contains("a &quot;b&quot; &lt;script&gt;"));
        assert!(!p.contains("<script>"));
    }
}
