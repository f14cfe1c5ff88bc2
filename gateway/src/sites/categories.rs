//! The operator's list of host → category for sites that are not registered
//! (`serve --categories FILE`, TOML: `"wikipedia.org" = "reference"`). A
//! listed name covers its subdomains; errors name file, line and column.

use std::collections::HashMap;
use std::path::Path;

use crate::sites::input::parse_category;
use crate::tariff::line_col;

/// Hosts and their categories, by normalised name.
#[derive(Debug, Clone, Default)]
pub struct CategoryList {
    by_host: HashMap<String, String>,
}

impl CategoryList {
    /// Parse a list; errors read `FILE:LINE:COL: what was wrong`.
    pub fn parse(src: &str, origin: &str) -> Result<CategoryList, String> {
        let table: toml::Spanned<toml::Table> =
            toml::from_str(src).map_err(|e| match e.span() {
                Some(s) => {
                    let (l, c) = line_col(src, s.start);
                    format!("{origin}:{l}:{c}: {}", e.message())
                }
                None => format!("{origin}: {}", e.message()),
            })?;
        // Spans of keys: find each key's line by searching the source (toml's
        // Table keeps no spans for keys).
        let at = |key: &str| {
            let offset = src
                .find(&format!("\"{key}\""))
                .or_else(|| src.find(key))
                .unwrap_or(0);
            let (l, c) = line_col(src, offset);
            format!("{origin}:{l}:{c}")
        };
        let mut by_host = HashMap::new();
        for (host, v) in table.get_ref() {
            let Some(cat) = v.as_str() else {
                return Err(format!(
                    "{}: {host}: expected a category name in quotes, as in \"news.example\" = \"news\"",
                    at(host)
                ));
            };
            let name = policy::normalise_host(host).map_err(|e| format!("{}: {e}", at(host)))?;
            let cat =
                parse_category(cat).map_err(|e| format!("{}: {host}: {}", at(host), e.why))?;
            by_host.insert(name.into_owned(), cat);
        }
        Ok(CategoryList { by_host })
    }

    pub fn load(path: &Path) -> Result<CategoryList, String> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the category list: {e}", path.display()))?;
        CategoryList::parse(&src, &path.display().to_string())
    }

    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    /// The category of a normalised host: its own entry, else its nearest
    /// listed parent domain's.
    pub fn category(&self, host: &str) -> Option<&str> {
        let mut h = host;
        loop {
            if let Some(c) = self.by_host.get(h) {
                return Some(c);
            }
            // IP literals have no parent domains.
            if h.parse::<std::net::IpAddr>().is_ok() {
                return None;
            }
            h = h.split_once('.')?.1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_name_covers_its_subdomains() {
        let l = CategoryList::parse(
            "\"wikipedia.org\" = \"reference\"\n\"News.Example\" = \"news\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(l.category("en.wikipedia.org"), Some("reference"));
        assert_eq!(l.category("news.example"), Some("news"));
        assert_eq!(l.category("example"), None);
        assert_eq!(l.category("127.0.0.1"), None);
    }

    #[test]
    fn errors_name_the_file_line_and_host() {
        let e = CategoryList::parse(
            "\"a.example\" = \"news\"\n\"b.example\" = \"Bad Name\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(e.starts_with("c.toml:2:1: b.example:"), "{e}");
        let e = CategoryList::parse("\"a.example\" = 3\n", "c.toml").unwrap_err();
        assert!(e.starts_with("c.toml:1:1:"), "{e}");
        let e = CategoryList::parse("a = \n", "c.toml").unwrap_err();
        assert!(e.starts_with("c.toml:1:"), "{e}");
    }

    #[test]
    fn the_sample_list_parses() {
        let l = CategoryList::parse(
            include_str!("../../../data/categories.toml"),
            "data/categories.toml",
        )
        .unwrap();
        assert!(l.len() > 0);
    }
}
