//! Tests of the stacked bar chart: valid, escaped, deterministic SVG.

use super::*;

fn sample<'a>(series: Vec<Series>) -> Chart<'a> {
    Chart {
        title: "spending per day",
        buckets: vec!["12-01".into(), "12-02".into(), "12-03".into()],
        series,
        unit: "EUR",
        empty_text: "no spending yet",
        width: 640,
        height: 240,
    }
}

fn series(name: &str, values: &[i64]) -> Series {
    Series {
        name: name.into(),
        values: values.to_vec(),
    }
}

fn assert_svg(svg: &str) {
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.ends_with("</svg>"), "{svg}");
    assert!(!svg.to_lowercase().contains("<script"), "{svg}");
    assert!(!svg.contains("href"), "no external resources: {svg}");
    assert_eq!(svg.matches("<svg").count(), 1);
}

mod stacked_bars {
    use super::*;

    #[test]
    fn draws_each_series_with_its_own_fill_and_legend() {
        let svg = stacked_bars(&sample(vec![
            series("example.org", &[50_000, 0, 120_000]),
            series("news.example", &[10_000, 30_000, 0]),
        ]));
        assert_svg(&svg);
        assert!(svg.contains("example.org"));
        assert!(svg.contains("news.example"));
        assert!(svg.contains("spending per day"));
        assert!(svg.contains("12-02"));
        assert!(svg.contains(&format!("fill=\"{}\"", colour(0))));
        let first = fill_count(&svg, 0);
        let second = fill_count(&svg, 1);
        // two bars plus a legend swatch each
        assert_eq!(first, 3, "{svg}");
        assert_eq!(second, 3, "{svg}");
    }

    #[test]
    fn escapes_series_names() {
        let svg = stacked_bars(&sample(vec![series("<script>&\"x", &[1_000_000, 2, 3])]));
        assert_svg(&svg);
        assert!(svg.contains("&lt;script&gt;&amp;&quot;x"), "{svg}");
    }

    #[test]
    fn escapes_title_and_buckets() {
        let mut chart = sample(vec![series("a", &[1, 2, 3])]);
        chart.title = "<b>title</b>";
        chart.buckets[0] = "<i>".into();
        let svg = stacked_bars(&chart);
        assert_svg(&svg);
        assert!(!svg.contains("<b>") && !svg.contains("<i>"), "{svg}");
    }

    #[test]
    fn is_deterministic() {
        let chart = sample(vec![series("a", &[5, 6, 7]), series("b", &[1, 0, 9])]);
        assert_eq!(stacked_bars(&chart), stacked_bars(&chart));
    }

    #[test]
    fn empty_chart_says_so() {
        for chart in [
            sample(vec![]),
            sample(vec![series("a", &[0, 0, 0])]),
            Chart {
                buckets: vec![],
                ..sample(vec![series("a", &[])])
            },
        ] {
            let svg = stacked_bars(&chart);
            assert_svg(&svg);
            assert!(svg.contains("no spending yet"), "{svg}");
        }
    }

    #[test]
    fn negative_values_are_drawn_as_zero() {
        let only_credit = stacked_bars(&sample(vec![series("a", &[-5_000_000, 0, 0])]));
        assert!(only_credit.contains("no spending yet"), "{only_credit}");
        let mixed = stacked_bars(&sample(vec![series("a", &[-5_000_000, 1_000_000, 0])]));
        assert_svg(&mixed);
        assert_eq!(fill_count(&mixed, 0), 2, "one bar and the legend: {mixed}");
    }

    #[test]
    fn short_or_long_value_lists_are_tolerated() {
        let svg = stacked_bars(&sample(vec![
            series("a", &[1]),
            series("b", &[1, 2, 3, 4, 5]),
        ]));
        assert_svg(&svg);
    }

    #[test]
    fn tiny_sizes_are_enlarged() {
        let mut chart = sample(vec![series("a", &[1, 2, 3])]);
        chart.width = 1;
        chart.height = 1;
        let svg = stacked_bars(&chart);
        assert_svg(&svg);
        assert!(
            svg.starts_with(&format!("<svg width=\"{MIN_WIDTH}\"")),
            "{svg}"
        );
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let svg = stacked_bars(&sample(vec![
            series("a", &[i64::MAX, 1, 0]),
            series("b", &[i64::MAX, 0, 0]),
        ]));
        assert_svg(&svg);
    }

    /// Writes a sample to $PADNET_CHART_SAMPLE for a person to look at.
    #[test]
    fn sample_for_people() {
        let Ok(path) = std::env::var("PADNET_CHART_SAMPLE") else {
            return;
        };
        let chart = Chart {
            title: "spending per hour",
            buckets: (0..24).map(|h| format!("{h:02}:00")).collect(),
            series: (0..6)
                .map(|s| {
                    series(
                        &format!("site{s}.example"),
                        &(0..24)
                            .map(|h| ((h * 7 + s * 13) % 11) * 9_000)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect(),
            unit: "EUR",
            empty_text: "no spending yet",
            width: 720,
            height: 280,
        };
        std::fs::write(path, stacked_bars(&chart)).expect("sample written");
    }

    /// How many shapes carry the `index`th palette colour.
    fn fill_count(svg: &str, index: usize) -> usize {
        let RGBColor(r, g, b) = PALETTE[index];
        svg.matches(&format!("fill=\"#{r:02X}{g:02X}{b:02X}\""))
            .count()
    }
}

mod amount {
    use super::*;

    #[test]
    fn keeps_two_decimals_and_more_when_needed() {
        assert_eq!(amount(50_000, "EUR"), "0.05 EUR");
        assert_eq!(amount(0, "EUR"), "0.00 EUR");
        assert_eq!(amount(2_000_000, "EUR"), "2.00 EUR");
        assert_eq!(amount(1_234, "EUR"), "0.001234 EUR");
        assert_eq!(amount(-1_500_000, "EUR"), "-1.50 EUR");
        assert_eq!(amount(i64::MIN, ""), "-9223372036854.775808");
    }
}
