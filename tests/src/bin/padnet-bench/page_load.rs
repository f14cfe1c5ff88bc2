//! The page-load figure: a demo page with 100 small resources (PNG images,
//! CSS, JS), served by the bench origin, loaded in headless Chromium through
//! each peer with a fresh profile per load (a cold cache); load-event ms.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::peers::{interleaved, medians, Peer, Table};
use padnet_tests::CHROMIUM_OFFLINE;

const IMAGES: usize = 40;
const STYLES: usize = 30;
const SCRIPTS: usize = 30;
const CHROMIUM: &str = "/usr/bin/chromium";

/// Write the demo page and its resources into `root/pageload/`; returns the
/// page's path on the origin.
pub fn write_page(root: &Path) -> anyhow::Result<&'static str> {
    use rand::{Rng, RngCore};
    let dir = root.join("pageload");
    std::fs::create_dir_all(&dir)?;
    let mut rng = rand::thread_rng();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>padnet page-load demo</title>\n",
    );
    for i in 0..STYLES {
        // ~2 KiB each: rules for classes nobody uses, and one that counts.
        let mut css = format!("body {{ --s{i}: 1; }}\n");
        while css.len() < 2048 {
            css += &format!(".c{i}-{:08x} {{ margin: {}px; }}\n", rng.gen::<u32>(), i);
        }
        std::fs::write(dir.join(format!("s{i}.css")), css)?;
        html += &format!("<link rel=\"stylesheet\" href=\"s{i}.css\">\n");
    }
    html += "</head><body>\n";
    for i in 0..IMAGES {
        // 24×24 to 40×40 RGB, random pixels: 1.7 to 4.8 KiB, stored uncompressed.
        let side = 24 + (i % 5) as u32 * 4;
        let mut pixels = vec![0u8; (side * side * 3) as usize];
        rng.fill_bytes(&mut pixels);
        std::fs::write(dir.join(format!("i{i}.png")), png(side, side, &pixels))?;
        html += &format!("<img src=\"i{i}.png\" width=\"{side}\" height=\"{side}\" alt=\"\">\n");
    }
    for i in 0..SCRIPTS {
        // ~3 KiB each: a string to keep, and a counter.
        let filler: String = (0..3000)
            .map(|_| rng.gen_range(b'a'..=b'z') as char)
            .collect();
        let js = format!("window.__js = (window.__js || 0) + 1;\nwindow.__f{i} = \"{filler}\";\n");
        std::fs::write(dir.join(format!("j{i}.js")), js)?;
        html += &format!("<script src=\"j{i}.js\"></script>\n");
    }
    html += r#"<script>
addEventListener('load', function () {
  var b = document.body;
  var n = performance.getEntriesByType('navigation')[0];
  b.setAttribute('data-load-start', String(n.loadEventStart));
  var imgs = 0;
  document.querySelectorAll('img').forEach(function (i) { if (i.complete && i.naturalWidth > 0) imgs++; });
  b.setAttribute('data-ok', String(imgs + (window.__js || 0) + document.styleSheets.length));
  setTimeout(function () {
    b.setAttribute('data-load-end', String(performance.getEntriesByType('navigation')[0].loadEventEnd));
  }, 0);
});
</script>
</body></html>
"#;
    std::fs::write(dir.join("index.html"), html)?;
    Ok("/pageload/index.html")
}

/// A PNG of `w`×`h` RGB `pixels`, its zlib stream in stored (uncompressed) blocks.
fn png(w: u32, h: u32, pixels: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for row in pixels.chunks((w * 3) as usize) {
        raw.push(0); // filter: none
        raw.extend(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend((b.len() as u16).to_le_bytes());
        z.extend((!(b.len() as u16)).to_le_bytes());
        z.extend(*b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// One load of `url` in a fresh headless Chromium (a new profile: nothing
/// cached), through `proxy` when given: the load event's ms after
/// navigation start, or why not.
fn load_once(work: &Path, url: &str, proxy: Option<std::net::SocketAddr>) -> Result<f64, String> {
    let profile = tempfile::tempdir_in(work).map_err(|e| format!("profile dir: {e}"))?;
    let mut c = Command::new("timeout");
    c.args(["-k", "5", "60", CHROMIUM])
        .args(CHROMIUM_OFFLINE)
        .args([
            "--timeout=30000",
            // The origin's certificate is from the bench's own CA; TLS runs end
            // to end to it (through CONNECT when proxied).
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    if let Some(p) = proxy {
        // Loopback through the proxy too: the origin is on 127.0.0.1.
        c.arg(format!("--proxy-server=http://{p}"))
            .arg("--proxy-bypass-list=<-loopback>");
    }
    let out = c
        .arg("--dump-dom")
        .arg(url)
        .output()
        .map_err(|e| format!("running {CHROMIUM}: {e}"))?;
    let dom = String::from_utf8_lossy(&out.stdout);
    let attr = |name: &str| -> Option<f64> {
        let at = dom.find(&format!("{name}=\""))? + name.len() + 2;
        let end = dom[at..].find('"')?;
        dom[at..at + end].parse().ok()
    };
    let ok = attr("data-ok").unwrap_or(0.0) as usize;
    if ok != IMAGES + STYLES + SCRIPTS {
        return Err(format!(
            "{ok} of {} resources loaded; chromium said: {}",
            IMAGES + STYLES + SCRIPTS,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    attr("data-load-end")
        .filter(|&t| t > 0.0)
        .or_else(|| attr("data-load-start"))
        .ok_or_else(|| "the page did not report its load time".to_string())
}

/// `loads` rounds of one load per peer of `url`; adds a row to `table`.
pub fn page_loads(
    table: &mut Table,
    peers: &[Peer],
    work: &Path,
    url: &str,
    label: &str,
    loads: usize,
) {
    if !PathBuf::from(CHROMIUM).exists() {
        table.note(format!(
            "{label}: not measured ({CHROMIUM} is missing; scripts/ensure-tools.sh installs it)"
        ));
        return;
    }
    let runs = interleaved(peers, loads, |p| match load_once(work, url, p.proxy) {
        Ok(ms) => Some(ms),
        Err(e) => {
            eprintln!("warning: page load via {}: {e}", p.name);
            None
        }
    });
    table.row(label, medians(&runs, |&v| v), 0);
}
