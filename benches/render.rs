//! The cost of drawing one full dashboard frame (design §11: rendering in criterion).
//!
//! `render/full_frame/10_providers` draws the whole screen (header, a ten-provider table, the
//! routes, a latency sparkline, the log pane and the footer) into a 120×36 `TestBackend`, and
//! `…_80x24` into the smallest supported terminal, the way the event loop does for each redraw
//! (at most ten a second): ratatui's diff against the previous frame included, no terminal I/O.

use ccr::tui::logs::LogPane;
use ccr::tui::sample::{self, Scenario};
use ccr::tui::{App, render};
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::hint::black_box;
use std::sync::Arc;

fn full_frame(c: &mut Criterion) {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let app = App::new(Arc::new(sample::many_providers(10)), tx)
        .with_log_pane(LogPane::Fixed(sample::log_lines(Scenario::ProviderDown)));
    let mut group = c.benchmark_group("render/full_frame");
    for (name, width, height) in [("10_providers", 120, 36), ("10_providers_80x24", 80, 24)] {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        group.bench_function(name, |b| {
            b.iter(|| {
                terminal.draw(|frame| render(black_box(&app), frame)).expect("draw");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, full_frame);
criterion_main!(benches);
