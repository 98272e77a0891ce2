package maintenance

import (
	"io"

	"github.com/go-pdf/fpdf"
)

// WritePDF writes the report as a PDF document (A4 landscape): the title, the
// meta lines, then the table with its header repeated on every page and the
// totals row last. Text is set in the PDF core font Helvetica, translated from
// UTF-8 to its Windows-1252 encoding (characters outside it print as '?').
func (r Report) WritePDF(w io.Writer) error {
	const (
		margin  = 10.0
		rowH    = 5.0
		minColW = 12.0
	)
	doc := fpdf.New("L", "mm", "A4", "")
	doc.SetMargins(margin, margin, margin)
	doc.SetAutoPageBreak(true, margin)
	doc.SetTitle(r.Title, true)
	doc.SetCreator("Taskforge", true)
	tr := doc.UnicodeTranslatorFromDescriptor("")

	pageW, _ := doc.GetPageSize()
	colW := minColW
	if n := len(r.Columns); n > 0 {
		colW = max(minColW, (pageW-2*margin)/float64(n))
	}
	fontSize := 8.0
	if colW < 20 {
		fontSize = 6.5
	}
	header := func() {
		doc.SetFont("Helvetica", "B", fontSize)
		doc.SetFillColor(230, 230, 230)
		for _, c := range r.Columns {
			doc.CellFormat(colW, rowH, fit(doc, tr(c), colW), "1", 0, "L", true, 0, "")
		}
		doc.Ln(-1)
		doc.SetFont("Helvetica", "", fontSize)
	}
	doc.SetHeaderFuncMode(func() {
		if doc.PageNo() > 1 {
			header()
		}
	}, true)

	doc.AddPage()
	doc.SetFont("Helvetica", "B", 14)
	doc.CellFormat(0, 8, tr(r.Title), "", 1, "L", false, 0, "")
	doc.SetFont("Helvetica", "", 9)
	for _, m := range r.Meta {
		doc.CellFormat(0, 5, tr(m[0]+": "+m[1]), "", 1, "L", false, 0, "")
	}
	doc.Ln(2)
	header()
	row := func(cells []string, style string) {
		doc.SetFont("Helvetica", style, fontSize)
		for i := range r.Columns {
			cell := ""
			if i < len(cells) {
				cell = cells[i]
			}
			doc.CellFormat(colW, rowH, fit(doc, tr(cell), colW), "1", 0, "L", false, 0, "")
		}
		doc.Ln(-1)
	}
	for _, cells := range r.Rows {
		row(cells, "")
	}
	if r.Totals != nil {
		row(r.Totals, "B")
	}
	return doc.Output(w)
}

// fit shortens s with a trailing "~" until it fits a cell of width w.
func fit(doc *fpdf.Fpdf, s string, w float64) string {
	const pad = 2.0
	if doc.GetStringWidth(s) <= w-pad {
		return s
	}
	rs := []rune(s)
	for len(rs) > 0 && doc.GetStringWidth(string(rs)+"~") > w-pad {
		rs = rs[:len(rs)-1]
	}
	return string(rs) + "~"
}
