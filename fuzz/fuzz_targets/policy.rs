//! Policy files and request hosts: parse anything, never panic; when a file
//! parses, deciding on any host never panics either.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        let (file, host) = data.split_at(split);
        let host = String::from_utf8_lossy(host.get(1..).unwrap_or_default());
        let _ = policy::normalise_host(&host);
        if let Ok(src) = std::str::from_utf8(file) {
            if let Ok(p) = policy::Policy::parse(src, "fuzz.toml") {
                let facts = policy::RequestFacts {
                    host: &host,
                    port: 443,
                    path: Some("/"),
                    now_unix: data.len() as i64 * 7919,
                };
                let _ = p.decide(&facts, &policy::NoCategories);
                let _ = p.summary();
            }
        }
    });
}
