//! Regenerates `screenshots/`: real renders of the dashboard from the code, on a 120×36
//! `TestBackend` fed the fixed samples of `ccr::tui::sample`.
//!
//! ```text
//! cargo run --example screenshots
//! ```
//!
//! For each screen it writes `screenshots/<name>.txt` (the plain text of the buffer) and
//! `screenshots/<name>.svg` (the buffer with its colours, one `<text>` per run of equally styled
//! cells); when ImageMagick's `convert` is on the PATH it also writes `screenshots/<name>.png`.

use ccr::tui::sample::{self, Scenario};
use ccr::tui::{Action, App, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};

const WIDTH: u16 = 120;
const HEIGHT: u16 = 36;
/// Cell size in SVG pixels (DejaVu Sans Mono at 14 px is about 8.4 px wide).
const CELL_W: f32 = 8.4;
const CELL_H: f32 = 17.0;
const FONT_SIZE: f32 = 14.0;
const BACKGROUND: &str = "#1e1e1e";
const FOREGROUND: &str = "#d4d4d4";

fn main() -> ExitCode {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let help = || {
        let mut app = sample::app(Scenario::Normal).0;
        app.apply(Action::ToggleHelp);
        app
    };
    let keys = || {
        let mut app = sample::app(Scenario::Normal).0;
        app.apply(Action::ToggleKeys);
        app
    };
    let screens: [(&str, App); 4] = [
        ("normal", sample::app(Scenario::Normal).0),
        ("provider-down", sample::app(Scenario::ProviderDown).0),
        ("help", help()),
        ("keys", keys()),
    ];
    let converter = png_converter();
    for (name, app) in screens {
        let mut terminal = match Terminal::new(TestBackend::new(WIDTH, HEIGHT)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("test backend: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = terminal.draw(|frame| render(&app, frame)) {
            eprintln!("render {name}: {e}");
            return ExitCode::FAILURE;
        }
        let buffer = terminal.backend().buffer();
        let txt = out.join(format!("{name}.txt"));
        let svg = out.join(format!("{name}.svg"));
        if let Err(e) = std::fs::write(&txt, text(buffer)).and_then(|()| std::fs::write(&svg, to_svg(buffer)))
        {
            eprintln!("write {name}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {}", txt.display());
        println!("wrote {}", svg.display());
        if let Some(converter) = converter {
            let png = out.join(format!("{name}.png"));
            match converter.run(&svg, &png) {
                Ok(()) => println!("wrote {}", png.display()),
                Err(e) => eprintln!("{name}.png: {e}"),
            }
        }
    }
    if converter.is_none() {
        println!("neither rsvg-convert nor ImageMagick's convert found: PNGs skipped");
    }
    ExitCode::SUCCESS
}

/// A program that turns an SVG into a PNG.
#[derive(Clone, Copy)]
enum Converter {
    Rsvg,
    ImageMagick,
}

impl Converter {
    fn run(self, svg: &Path, png: &Path) -> Result<(), String> {
        let status = match self {
            Converter::Rsvg => Command::new("rsvg-convert").arg(svg).arg("-o").arg(png).status(),
            Converter::ImageMagick => Command::new("convert").arg(svg).arg(png).status(),
        };
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("converter exited with {s}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The first working converter: librsvg's, else ImageMagick's (a real one: its `-version` names it).
fn png_converter() -> Option<Converter> {
    let works = |cmd: &str, arg: &str, needle: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
    };
    if works("rsvg-convert", "--version", "rsvg-convert") {
        Some(Converter::Rsvg)
    } else if works("convert", "-version", "Version: ImageMagick") {
        Some(Converter::ImageMagick)
    } else {
        None
    }
}

/// The buffer's text, trailing blanks trimmed from each row.
fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let row: String = (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// The xterm-ish colour of a ratatui colour, `None` for the terminal's default.
fn hex(color: Color) -> Option<String> {
    let named = match color {
        Color::Reset => return None,
        Color::Black => "#000000",
        Color::Red => "#f14c4c",
        Color::Green => "#23d18b",
        Color::Yellow => "#f5f543",
        Color::Blue => "#3b8eea",
        Color::Magenta => "#d670d6",
        Color::Cyan => "#29b8db",
        Color::Gray => "#cccccc",
        Color::DarkGray => "#767676",
        Color::LightRed => "#ff7b7b",
        Color::LightGreen => "#5af78e",
        Color::LightYellow => "#ffff7b",
        Color::LightBlue => "#6fb3ff",
        Color::LightMagenta => "#ff92df",
        Color::LightCyan => "#7be8ff",
        Color::White => "#ffffff",
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => return Some(indexed(i)),
    };
    Some(named.to_owned())
}

/// An xterm 256-colour palette entry.
fn indexed(i: u8) -> String {
    const BASE: [&str; 16] = [
        "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5", "#7f7f7f",
        "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
    ];
    match i {
        0..=15 => BASE[usize::from(i)].to_owned(),
        16..=231 => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            let n = i - 16;
            format!("#{:02x}{:02x}{:02x}", level(n / 36), level((n / 6) % 6), level(n % 6))
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            format!("#{g:02x}{g:02x}{g:02x}")
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The buffer as an SVG: background rectangles, then text runs of one style each.
fn to_svg(buffer: &Buffer) -> String {
    let (w, h) = (f32::from(buffer.area.width) * CELL_W, f32::from(buffer.area.height) * CELL_H);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="{BACKGROUND}"/>"#);
    let _ = writeln!(
        svg,
        r#"<g font-family="DejaVu Sans Mono, monospace" font-size="{FONT_SIZE}" xml:space="preserve">"#
    );
    for y in 0..buffer.area.height {
        let mut x = 0;
        while x < buffer.area.width {
            let cell = &buffer[(x, y)];
            let reversed = cell.modifier.contains(Modifier::REVERSED);
            let (fg, bg) = if reversed { (cell.bg, cell.fg) } else { (cell.fg, cell.bg) };
            let bold = cell.modifier.contains(Modifier::BOLD);
            // A run of cells with the same look.
            let start = x;
            let mut run = String::new();
            while x < buffer.area.width {
                let c = &buffer[(x, y)];
                if c.fg != cell.fg || c.bg != cell.bg || c.modifier != cell.modifier {
                    break;
                }
                run.push_str(c.symbol());
                x += 1;
            }
            let px = f32::from(start) * CELL_W;
            let py = f32::from(y) * CELL_H;
            if let Some(bg) = hex(bg) {
                let rw = f32::from(x - start) * CELL_W;
                let _ =
                    writeln!(svg, r#"<rect x="{px}" y="{py}" width="{rw}" height="{CELL_H}" fill="{bg}"/>"#);
            }
            if run.trim().is_empty() {
                continue;
            }
            let fill = hex(fg).unwrap_or_else(|| FOREGROUND.to_owned());
            let weight = if bold { r#" font-weight="bold""# } else { "" };
            let baseline = py + CELL_H * 0.78;
            let len = f32::from(x - start) * CELL_W;
            let _ = writeln!(
                svg,
                r#"<text x="{px}" y="{baseline}" fill="{fill}"{weight} textLength="{len}" lengthAdjust="spacingAndGlyphs">{}</text>"#,
                escape(&run)
            );
        }
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}
