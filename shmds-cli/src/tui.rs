//! The live view of `shmds watch`: a table of the segment's structures
//! redrawn several times a second, with a fill bar, rates and a history of
//! the outgoing rate per entry. `q`, Esc or Ctrl-C quits. It reads through
//! a read-only mapping and keeps going when the segment is removed (the
//! mapping stays valid; the header says so).

use crate::watch::{fill_text, rate_text, rates, sample, state_text, Sample};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use std::collections::HashMap;
use std::time::Duration;

/// How many past rates each entry's history shows.
const HISTORY: usize = 24;

/// Outgoing rates per entry, newest last.
pub type History = HashMap<String, Vec<f64>>;

/// Run the live view until the user quits.
pub fn run(name: &str, only: &[String], interval: f64) -> Result<(), String> {
    let seg = crate::inspect_options()
        .open(name)
        .map_err(|e| e.to_string())?;
    let mut prev = sample(&seg, only)?;
    let mut history = History::new();
    let mut terminal = ratatui::init();
    let outcome = (|| -> Result<(), String> {
        loop {
            if event::poll(Duration::from_secs_f64(interval)).map_err(|e| e.to_string())? {
                if let Event::Key(k) = event::read().map_err(|e| e.to_string())? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
            let now = sample(&seg, only)?;
            remember(&mut history, &prev, &now);
            terminal
                .draw(|f| draw(f, seg.name(), &prev, &now, &history))
                .map_err(|e| e.to_string())?;
            prev = now;
        }
    })();
    ratatui::restore();
    outcome
}

/// Add the rates between two samples to the history.
pub fn remember(history: &mut History, prev: &Sample, now: &Sample) {
    for row in &now.rows {
        if let Some((_, out)) = rates(prev, now, row) {
            let h = history.entry(row.name.clone()).or_default();
            h.push(out);
            if h.len() > HISTORY {
                h.remove(0);
            }
        }
    }
}

/// Rates as a line of block characters, scaled to their largest.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().cloned().fold(0.0, f64::max);
    values
        .iter()
        .map(|&v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

/// Draw one frame.
pub fn draw(frame: &mut Frame, name: &str, prev: &Sample, now: &Sample, history: &History) {
    let [top, body] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(frame.area());
    let live: Vec<String> = now
        .attached
        .iter()
        .filter(|a| a.alive)
        .map(|a| a.pid.to_string())
        .collect();
    let header = format!(
        "segment {name}{} · {} entries · attached: {} · q quits",
        if now.removed {
            " (REMOVED from /dev/shm)"
        } else {
            ""
        },
        now.rows.len(),
        if live.is_empty() {
            "none".to_owned()
        } else {
            live.join(", ")
        },
    );
    frame.render_widget(Paragraph::new(Line::from(header)), top);
    let rows = now.rows.iter().map(|r| {
        let spark = history
            .get(&r.name)
            .map(|h| sparkline(h))
            .unwrap_or_default();
        Row::new(vec![
            r.name.clone(),
            r.kind.to_owned(),
            r.type_name.clone(),
            fill_text(r, 12).unwrap_or_default(),
            rate_text(prev, now, r).unwrap_or_default(),
            spark,
            state_text(r),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(22),
            Constraint::Length(24),
            Constraint::Length(30),
            Constraint::Length(HISTORY as u16),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            "NAME", "KIND", "TYPE", "FILL", "RATE", "HISTORY", "STATE",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered());
    frame.render_widget(table, body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Row as Figures;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Instant;

    fn row(name: &str, fill: u64, totals: (u64, u64)) -> Figures {
        Figures {
            name: name.into(),
            generation: 2,
            kind: "queue",
            type_name: "u64".into(),
            fill: Some(fill),
            capacity: 10,
            totals: Some(totals),
            state: None,
            probe: None,
            error: None,
        }
    }

    #[test]
    fn a_frame_shows_fill_rates_and_history() {
        let at = Instant::now();
        let prev = Sample {
            at,
            rows: vec![row("jobs", 0, (0, 0))],
            attached: Vec::new(),
            removed: false,
        };
        let now = Sample {
            at: at + Duration::from_secs(1),
            rows: vec![row("jobs", 5, (1000, 995))],
            attached: Vec::new(),
            removed: true,
        };
        let mut history = History::new();
        remember(&mut history, &prev, &now);
        assert_eq!(history["jobs"], vec![995.0]);
        let mut terminal = Terminal::new(TestBackend::new(140, 8)).unwrap();
        terminal
            .draw(|f| draw(f, "demo", &prev, &now, &history))
            .unwrap();
        let text: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for want in [
            "segment demo",
            "REMOVED",
            "jobs",
            "queue",
            "5/10",
            "██████",
            "1000 in, 995 out items/s",
            "█",
        ] {
            assert!(text.contains(want), "{want:?} not drawn: {text}");
        }
        assert_eq!(sparkline(&[0.0, 5.0, 10.0]), "▁▅█");
    }
}
