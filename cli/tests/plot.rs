//! Charts and sparklines: the SVG is well-formed and has what a reader looks for, the PNG
//! decodes at the asked size with something drawn, and bad paths fail clearly.

// The CLI is a binary crate, so an integration test cannot reach its modules: the plot
// module is compiled into this test directly. It needs nothing from the rest of the CLI.

#[path = "../src/plot/mod.rs"]
mod plot;

use plot::{PlotError, PlotOptions, Point, Series, render_png, render_svg, sparkline, write_plot};

/// `runs` runs of `epochs` epochs with falling losses, train below validation, deeper
/// runs lower: what a small sweep over layers looks like.
fn sweep(runs: usize, epochs: u32) -> Vec<Series> {
    (0..runs)
        .map(|r| Series {
            label: format!("run {}: layers={}", 10 + r, r + 1),
            points: (1..=epochs)
                .map(|e| {
                    let t = f64::from(e);
                    let floor = 1.45 - 0.12 * (r % 4) as f64 - 0.004 * r as f64;
                    let train = floor + 1.9 * (-0.35 * t).exp() - 0.01 * t;
                    let val = floor + 0.08 + 1.8 * (-0.33 * t).exp() + 0.004 * t * (r % 4) as f64;
                    Point {
                        epoch: e,
                        train_loss: train,
                        val_loss: val,
                    }
                })
                .collect(),
        })
        .collect()
}

fn opts(title: &str) -> PlotOptions {
    PlotOptions {
        title: title.to_string(),
        log_y: false,
        width: 960,
        height: 560,
    }
}

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("svg is not xml: {e}\n{svg}"))
}

fn with_class<'a>(doc: &'a roxmltree::Document<'a>, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|part| part == class))
        })
        .collect()
}

fn texts(doc: &roxmltree::Document<'_>, class: &str) -> Vec<String> {
    with_class(doc, class)
        .iter()
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect()
}

fn paths(doc: &roxmltree::Document<'_>, class: &str) -> Vec<String> {
    with_class(doc, class)
        .into_iter()
        .filter(|n| n.has_tag_name("path"))
        .map(|n| n.attribute("data-series").unwrap().to_string())
        .collect()
}

#[test]
fn svg_has_a_train_and_a_validation_path_per_run_and_a_legend() {
    let series = sweep(3, 10);
    let svg = render_svg(&series, &opts("sweep layers"));
    let doc = parse(&svg);
    assert_eq!(paths(&doc, "train"), ["0", "1", "2"]);
    assert_eq!(paths(&doc, "val"), ["0", "1", "2"]);
    assert_eq!(
        texts(&doc, "legend-label"),
        ["run 10: layers=1", "run 11: layers=2", "run 12: layers=3"]
    );
    assert_eq!(texts(&doc, "title"), ["sweep layers"]);
    assert_eq!(texts(&doc, "axis-title"), ["epoch", "loss (nats/char)"]);

    let train = with_class(&doc, "train")
        .into_iter()
        .find(|n| n.has_tag_name("path"))
        .unwrap();
    assert!(
        train.attribute("stroke-dasharray").is_some(),
        "train loss is dashed"
    );
    let val = with_class(&doc, "val")
        .into_iter()
        .find(|n| n.has_tag_name("path"))
        .unwrap();
    assert!(
        val.attribute("stroke-dasharray").is_none(),
        "validation loss is solid"
    );
    assert_ne!(
        train.attribute("stroke"),
        with_class(&doc, "train")[2].attribute("stroke"),
        "runs differ in colour"
    );
}

#[test]
fn ticks_are_one_two_five_steps() {
    let svg = render_svg(&sweep(3, 10), &opts(""));
    let doc = parse(&svg);
    let x: Vec<String> = texts(&doc, "x")
        .into_iter()
        .filter(|t| t != "epoch")
        .collect();
    assert_eq!(x, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    let y: Vec<f64> = texts(&doc, "y")
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert!(y.len() >= 4, "{y:?}");
    let step = y[1] - y[0];
    let mantissa = step / 10f64.powf(step.log10().floor());
    assert!(
        [1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-6),
        "step {step}"
    );
    assert!(y.windows(2).all(|w| ((w[1] - w[0]) - step).abs() < 1e-9));
}

#[test]
fn log_scale_ticks_are_decades() {
    let series = vec![Series {
        label: "wide".into(),
        points: vec![
            Point {
                epoch: 1,
                train_loss: 20.0,
                val_loss: 9.0,
            },
            Point {
                epoch: 2,
                train_loss: 0.3,
                val_loss: 0.5,
            },
            Point {
                epoch: 3,
                train_loss: 0.004,
                val_loss: 0.02,
            },
        ],
    }];
    let svg = render_svg(
        &series,
        &PlotOptions {
            log_y: true,
            ..opts("log")
        },
    );
    let doc = parse(&svg);
    assert_eq!(
        texts(&doc, "y"),
        ["0.01", "0.1", "1", "10", "loss (nats/char)"]
    );
}

#[test]
fn log_scale_within_one_decade_still_labels_the_axis() {
    let svg = render_svg(
        &sweep(2, 10),
        &PlotOptions {
            log_y: true,
            ..opts("")
        },
    );
    let doc = parse(&svg);
    let y: Vec<f64> = texts(&doc, "y")
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert!(y.len() >= 3, "{y:?}");
}

#[test]
fn degenerate_inputs_still_make_a_chart() {
    // One epoch: markers, since a single point draws no line.
    let one = vec![Series {
        label: "one".into(),
        points: vec![Point {
            epoch: 1,
            train_loss: 2.0,
            val_loss: 2.1,
        }],
    }];
    let doc_src = render_svg(&one, &opts(""));
    let doc = parse(&doc_src);
    assert_eq!(with_class(&doc, "marker").len(), 2);

    // Equal values: a flat line inside a range of non-zero height.
    let flat = vec![Series {
        label: "flat".into(),
        points: (1..=5)
            .map(|e| Point {
                epoch: e,
                train_loss: 1.5,
                val_loss: 1.5,
            })
            .collect(),
    }];
    let src = render_svg(&flat, &opts(""));
    let doc = parse(&src);
    assert!(texts(&doc, "y").len() >= 3);
    assert!(!src.contains("NaN") && !src.contains("inf"));

    // All-NaN series are skipped and named; NaN gaps do not break other runs.
    let mut series = sweep(2, 6);
    series[1].points[2].val_loss = f64::NAN;
    series.push(Series {
        label: "run 99: crashed".into(),
        points: vec![Point {
            epoch: 1,
            train_loss: f64::NAN,
            val_loss: f64::NAN,
        }],
    });
    let src = render_svg(&series, &opts(""));
    let doc = parse(&src);
    assert_eq!(paths(&doc, "val"), ["0", "1"]);
    assert!(texts(&doc, "note")[0].contains("run 99: crashed"));
    assert!(!src.contains("NaN"));

    // Nothing at all.
    let src = render_svg(&[], &opts("empty"));
    assert_eq!(texts(&parse(&src), "no-data"), ["no losses to plot"]);
}

#[test]
fn fifty_runs_fit_in_the_legend() {
    let series = sweep(50, 20);
    let o = opts("fifty");
    let src = render_svg(&series, &o);
    let doc = parse(&src);
    assert_eq!(paths(&doc, "val").len(), 50);
    let labels = with_class(&doc, "legend-label");
    assert_eq!(labels.len(), 50);
    for label in labels {
        let y: f64 = label.attribute("y").unwrap().parse().unwrap();
        let x: f64 = label.attribute("x").unwrap().parse().unwrap();
        assert!(
            y < f64::from(o.height) && x < f64::from(o.width),
            "legend entry off the chart at {x},{y}"
        );
    }
}

#[test]
fn labels_are_escaped() {
    let series = vec![Series {
        label: r#"run <1> & "quotes""#.into(),
        points: vec![Point {
            epoch: 1,
            train_loss: 1.0,
            val_loss: 2.0,
        }],
    }];
    let src = render_svg(&series, &opts("a < b & c"));
    let doc = parse(&src);
    assert_eq!(texts(&doc, "legend-label"), [r#"run <1> & "quotes""#]);
    assert_eq!(texts(&doc, "title"), ["a < b & c"]);
}

fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    (info, buf)
}

/// Share of pixels that are not plain white.
fn inked(info: &png::OutputInfo, buf: &[u8]) -> f64 {
    let channels = info.color_type.samples();
    let pixels = buf
        .chunks(channels)
        .filter(|px| px.iter().take(3).any(|&c| c < 200))
        .count();
    pixels as f64 / (buf.len() / channels) as f64
}

#[test]
fn png_decodes_at_the_asked_size_and_is_not_blank() {
    let o = PlotOptions {
        width: 800,
        height: 500,
        ..opts("sweep")
    };
    let bytes = render_png(&sweep(3, 10), &o).unwrap();
    let (info, buf) = decode(&bytes);
    assert_eq!((info.width, info.height), (800, 500));
    let share = inked(&info, &buf);
    assert!(share > 0.01 && share < 0.5, "inked share {share}");
}

#[test]
fn png_text_is_drawn() {
    // Same chart with and without a long title: the title's pixels must show up, which
    // they do not if no font was found.
    let o = opts("");
    let plain = decode(&render_png(&[], &o).unwrap());
    let titled = decode(
        &render_png(
            &[],
            &PlotOptions {
                title: "A TITLE WITH MANY LETTERS".into(),
                ..o
            },
        )
        .unwrap(),
    );
    let top_ink = |(info, buf): &(png::OutputInfo, Vec<u8>)| {
        let rows = 40 * info.width as usize * info.color_type.samples();
        inked(info, &buf[..rows])
    };
    assert!(top_ink(&titled) > top_ink(&plain) + 0.005);
}

#[test]
fn write_plot_picks_the_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let series = sweep(2, 4);
    let svg = dir.path().join("curves.svg");
    write_plot(&svg, &series, &opts("x")).unwrap();
    parse(&std::fs::read_to_string(&svg).unwrap());
    let png = dir.path().join("curves.PNG");
    write_plot(&png, &series, &opts("x")).unwrap();
    decode(&std::fs::read(&png).unwrap());

    let bad = dir.path().join("curves.pdf");
    let err = write_plot(&bad, &series, &opts("x")).unwrap_err();
    assert!(matches!(err, PlotError::UnsupportedExtension { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("curves.pdf") && msg.contains(".svg") && msg.contains(".png"),
        "{msg}"
    );
    assert!(!bad.exists());

    let none = dir.path().join("curves");
    assert!(write_plot(&none, &series, &opts("x")).is_err());
    let missing_dir = dir.path().join("no/such/dir/curves.svg");
    assert!(matches!(
        write_plot(&missing_dir, &series, &opts("x")),
        Err(PlotError::Io { .. })
    ));
}

fn word_rows() -> Vec<(String, f64, f64)> {
    [
        ("the", 0.061, 0.058),
        ("sun", 0.042, 0.0021),
        ("and", 0.035, 0.033),
        ("light", 0.012, 0.0016),
    ]
    .into_iter()
    .map(|(w, p, t)| (w.to_string(), p, t))
    .collect()
}

#[test]
fn word_bars_have_two_bars_per_word() {
    let src = plot::render_word_bars_svg(&word_rows(), "run 12: words in 200 poems");
    let doc = parse(&src);
    assert_eq!(texts(&doc, "word"), ["the", "sun", "and", "light"]);
    assert_eq!(with_class(&doc, "poems").len(), 4);
    assert_eq!(with_class(&doc, "training").len(), 4);
    assert_eq!(texts(&doc, "ratio")[1], "×20");
    assert_eq!(
        texts(&doc, "legend-label"),
        ["generated poems", "training set"]
    );

    let bytes = plot::render_word_bars_png(&word_rows(), "words").unwrap();
    let (info, buf) = decode(&bytes);
    assert_eq!(info.width, 900);
    assert!(inked(&info, &buf) > 0.01);

    let empty = plot::render_word_bars_svg(&[], "nothing");
    assert_eq!(texts(&parse(&empty), "no-data"), ["no words to plot"]);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("words.jpg");
    assert!(matches!(
        plot::write_word_bars(&bad, &word_rows(), "w"),
        Err(PlotError::UnsupportedExtension { .. })
    ));
    plot::write_word_bars(&dir.path().join("words.svg"), &word_rows(), "w").unwrap();
}

#[test]
fn sparkline_cases() {
    assert_eq!(sparkline(&[]), "");
    assert_eq!(
        sparkline(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        "▁▂▃▄▅▆▇█"
    );
    assert_eq!(sparkline(&[3.0, 1.0]), "█▁");
    assert_eq!(sparkline(&[2.0, 2.0, 2.0]), "▄▄▄");
    assert_eq!(sparkline(&[1.0, f64::NAN, 2.0]), "▁ █");
    assert_eq!(sparkline(&[f64::NAN, f64::NAN]), "  ");
    assert_eq!(sparkline(&[5.0]), "▄");
    assert_eq!(sparkline(&[0.0, f64::INFINITY, 1.0]), "▁ █");
}

/// Writes the example charts the report describes; run with `--ignored` and look.
#[test]
#[ignore]
fn write_examples() {
    let series = sweep(3, 10);
    write_plot(
        std::path::Path::new("/tmp/plot-example.png"),
        &series,
        &opts("sweep layers: 1, 2, 3 layers"),
    )
    .unwrap();
    write_plot(
        std::path::Path::new("/tmp/plot-example.svg"),
        &series,
        &opts("sweep layers: 1, 2, 3 layers"),
    )
    .unwrap();
    let many = sweep(50, 30);
    write_plot(
        std::path::Path::new("/tmp/plot-50.png"),
        &many,
        &opts("fifty runs"),
    )
    .unwrap();
    let log = PlotOptions {
        log_y: true,
        ..opts("log scale")
    };
    write_plot(std::path::Path::new("/tmp/plot-log.png"), &series, &log).unwrap();
    let edge = vec![
        Series { label: "run 1: one epoch".into(), points: vec![Point { epoch: 1, train_loss: 2.0, val_loss: 2.1 }] },
        Series {
            label: "run 2: layers=3 hidden=1024 dropout=0.3 lr=0.002 batch=64 seq=200 (a very long label)".into(),
            points: vec![Point { epoch: 1, train_loss: 1.9, val_loss: 2.0 }],
        },
        Series { label: "run 3: crashed".into(), points: vec![Point { epoch: 1, train_loss: f64::NAN, val_loss: f64::NAN }] },
    ];
    write_plot(
        std::path::Path::new("/tmp/plot-edge.png"),
        &edge,
        &opts("edge cases"),
    )
    .unwrap();
    let mut rows = word_rows();
    rows.extend(
        [
            ("of", 0.027, 0.029),
            ("my", 0.019, 0.016),
            ("heart", 0.011, 0.004),
            ("a", 0.02, 0.024),
        ]
        .into_iter()
        .map(|(w, p, t)| (w.to_string(), p, t)),
    );
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    plot::write_word_bars(
        std::path::Path::new("/tmp/words-example.png"),
        &rows,
        "run 12: most frequent words in 200 generated poems",
    )
    .unwrap();
}
