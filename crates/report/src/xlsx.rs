//! The report's tables as one workbook: a notes sheet first, then one sheet per table,
//! numbers as numbers. rust_xlsxwriter writes fixed ZIP times; the document's creation time
//! is set to the release's, so the bytes depend only on the report.

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook};

use crate::ReportError;
use crate::document::{Block, Document};
use crate::table::Cell;

fn err(e: rust_xlsxwriter::XlsxError) -> ReportError {
    ReportError::Xlsx(e.to_string())
}

pub fn workbook(doc: &Document) -> Result<Vec<u8>, ReportError> {
    let mut book = Workbook::new();
    let created = ExcelDateTime::parse_from_str(
        doc.release.created_at.get(..19).unwrap_or("1970-01-01T00:00:00"),
    )
    .map_err(err)?;
    book.set_properties(
        &DocProperties::new()
            .set_title(&doc.title)
            .set_subject(&doc.subtitle)
            .set_author("observatory")
            .set_comment(format!("release {}", doc.release.id))
            .set_creation_datetime(&created),
    );
    let bold = Format::new().set_bold();
    let title = Format::new().set_bold().set_font_size(13);
    let decimals = |d: u8| {
        Format::new().set_num_format(if d == 0 {
            "#,##0".to_owned()
        } else {
            format!("#,##0.{}", "0".repeat(d as usize))
        })
    };

    let notes = book.add_worksheet();
    notes.set_name("notes").map_err(err)?;
    notes.set_column_width(0, 28).map_err(err)?;
    notes.set_column_width(1, 110).map_err(err)?;
    notes.write_string_with_format(0, 0, &doc.title, &title).map_err(err)?;
    notes.write_string(1, 0, &doc.subtitle).map_err(err)?;
    let mut row = 3;
    for block in &doc.blocks {
        if let Block::Facts { items, .. } = block {
            for (k, v) in items {
                notes.write_string_with_format(row, 0, k, &bold).map_err(err)?;
                notes.write_string(row, 1, v).map_err(err)?;
                row += 1;
            }
        }
    }
    row += 1;
    notes.write_string_with_format(row, 0, "Sheet", &bold).map_err(err)?;
    notes
        .write_string_with_format(
            row,
            1,
            "Table, notes and the API requests it was read from",
            &bold,
        )
        .map_err(err)?;
    row += 1;
    for table in &doc.tables {
        notes.write_string(row, 0, &table.id).map_err(err)?;
        notes.write_string(row, 1, &table.title).map_err(err)?;
        row += 1;
        for line in table.notes.iter().chain(&table.sources) {
            notes.write_string(row, 1, line).map_err(err)?;
            row += 1;
        }
    }

    for table in &doc.tables {
        let sheet = book.add_worksheet();
        sheet.set_name(&table.id).map_err(err)?;
        sheet.write_string_with_format(0, 0, &table.title, &title).map_err(err)?;
        for (c, name) in table.columns.iter().enumerate() {
            sheet.write_string_with_format(2, c as u16, name, &bold).map_err(err)?;
            sheet
                .set_column_width(c as u16, (name.chars().count() as f64 + 4.0).max(12.0))
                .map_err(err)?;
        }
        for (r, cells) in table.rows.iter().enumerate() {
            let r = r as u32 + 3;
            for (c, cell) in cells.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Int(v) => {
                        sheet.write_number_with_format(r, c, *v as f64, &decimals(0)).map(|_| ())
                    }
                    Cell::Num { value, decimals: d } => {
                        sheet.write_number_with_format(r, c, *value, &decimals(*d)).map(|_| ())
                    }
                    Cell::Text(s) => sheet.write_string(r, c, s).map(|_| ()),
                    Cell::Empty => Ok(()),
                }
                .map_err(err)?;
            }
        }
        for (r, line) in (table.rows.len() as u32 + 4..).zip(&table.notes) {
            sheet.write_string(r, 0, line).map_err(err)?;
        }
        sheet.set_freeze_panes(3, 0).map_err(err)?;
    }
    book.save_to_buffer().map_err(err)
}
