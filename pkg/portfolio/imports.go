package portfolio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/upload"
)

// Defaults of ImportOptions.
const (
	DefaultImportBatchSize = 1000
	DefaultMaxLineBytes    = 4096
	DefaultMaxImportRows   = 5_000_000
	// MaxHoldingRows caps an import_holdings file: its positions are held in
	// memory until its one transaction.
	MaxHoldingRows      = 100_000
	DefaultMaxBadRatio  = 0.01
	maxImportBatchSize  = 10_000
	progressStepCheck   = "checking file"
	progressStepImport  = "importing"
	maxLoggedRejections = 10
)

// symbolPattern is the assets table's symbol check.
var symbolPattern = regexp.MustCompile(`^[A-Za-z0-9^][A-Za-z0-9^._=-]{0,31}$`)

// AdminFunc reports whether a principal is an admin (it may import anyone's
// uploads into any portfolio).
type AdminFunc func(ctx context.Context, principalID string) (bool, error)

// ImportOptions tune an Importer. The zero value gives the defaults.
type ImportOptions struct {
	// BatchSize is the number of price rows upserted per transaction. If zero,
	// DefaultImportBatchSize (1000); at most 10000.
	BatchSize int
	// MaxLineBytes caps one CSV record, quoted newlines included; a longer
	// one refuses the file. If zero, DefaultMaxLineBytes (4096).
	MaxLineBytes int
	// MaxRows caps the data rows of an import_prices file (import_holdings:
	// at most MaxHoldingRows). If zero, DefaultMaxImportRows (5,000,000).
	MaxRows int
	// IsAdmin decides whether a task's creator is an admin. If nil, nobody is:
	// every import is held to its creator's uploads and portfolios.
	IsAdmin AdminFunc
}

// Importer runs import_prices and import_holdings: it reads uploads from
// their store and writes prices and holdings. It is safe for concurrent use.
type Importer struct {
	db      *gorm.DB
	uploads *upload.Store
	log     *zap.Logger
	o       ImportOptions
}

// NewImporter returns an Importer. db and uploads are required; log may be nil.
func NewImporter(db *gorm.DB, uploads *upload.Store, log *zap.Logger, o ImportOptions) (*Importer, error) {
	if db == nil || uploads == nil {
		return nil, errors.New("portfolio: new importer: db and uploads are required")
	}
	if o.BatchSize < 0 || o.BatchSize > maxImportBatchSize {
		return nil, fmt.Errorf("portfolio: new importer: batch size %d outside 1..%d", o.BatchSize, maxImportBatchSize)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultImportBatchSize
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxRows <= 0 {
		o.MaxRows = DefaultMaxImportRows
	}
	if o.IsAdmin == nil {
		o.IsAdmin = func(context.Context, string) (bool, error) { return false, nil }
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Importer{db: db, uploads: uploads, log: log, o: o}, nil
}

// Handlers returns the two import handlers keyed by task type name.
func (im *Importer) Handlers() map[string]job.Handler {
	return map[string]job.Handler{
		tasks.TypeImportPrices:   job.Typed[*taskpb.ImportPricesParams](im.ImportPrices),
		tasks.TypeImportHoldings: job.Typed[*taskpb.ImportHoldingsParams](im.ImportHoldings),
	}
}

// creator is the running task's creator and whether it is an admin.
func (im *Importer) creator(ctx context.Context, r job.Reporter) (string, bool, error) {
	var owners []string
	if err := im.db.WithContext(ctx).Table("tasks").Where("id = ?", r.TaskID()).Pluck("created_by", &owners).Error; err != nil {
		return "", false, fmt.Errorf("portfolio: import: read task: %w", err)
	}
	if len(owners) == 0 {
		return "", false, job.Permanent(fmt.Errorf("portfolio: import: task %s not found", r.TaskID()))
	}
	admin, err := im.o.IsAdmin(ctx, owners[0])
	if err != nil {
		return "", false, fmt.Errorf("portfolio: import: %w", err)
	}
	return owners[0], admin, nil
}

// upload finds the task's upload: the creator's own, or anyone's for an
// admin; another's is not found, as an unknown id.
func (im *Importer) upload(ctx context.Context, id, owner string, admin bool) (upload.Upload, error) {
	up, err := im.uploads.Get(ctx, id)
	if errors.Is(err, upload.ErrNotFound) || (err == nil && up.CreatedBy != owner && !admin) {
		return upload.Upload{}, job.Permanent(fmt.Errorf("%w: %s", ErrUploadNotFound, id))
	}
	if err != nil {
		return upload.Upload{}, fmt.Errorf("portfolio: import: %w", err)
	}
	return up, nil
}

// open reads the upload's bytes.
func (im *Importer) open(ctx context.Context, up upload.Upload) (io.ReadCloser, error) {
	rc, err := im.uploads.Open(ctx, up)
	if errors.Is(err, upload.ErrNotFound) {
		return nil, job.Permanent(fmt.Errorf("%w: %s", ErrUploadNotFound, up.ID))
	}
	if err != nil {
		return nil, fmt.Errorf("portfolio: import: %w", err)
	}
	return rc, nil
}

// ImportPricesResult is the result of import_prices.
type ImportPricesResult struct {
	UploadID string `json:"upload_id"`
	Format   string `json:"format"`
	// RowsRead counts the data rows of the file (blank lines aside).
	RowsRead int `json:"rows_read"`
	// RowsUpserted counts the rows stored (inserted, updated or confirmed);
	// RowsChanged those that were inserted or changed a stored bar.
	RowsUpserted int   `json:"rows_upserted"`
	RowsChanged  int64 `json:"rows_changed"`
	RowsRejected int   `json:"rows_rejected"`
	// Rejected lists the first MaxRejected rejected rows in file order.
	Rejected      []Rejected `json:"rejected"`
	AssetsCreated int        `json:"assets_created"`
	Symbols       int        `json:"symbols"`
	MaxBadRatio   float64    `json:"max_bad_ratio"`
}

// priceRow is one data row of import_prices, parsed or rejected.
type priceRow struct {
	line   int
	symbol string
	bar    price.Bar
	// reason is why the row is rejected ("" when it parsed); value the
	// offending value.
	reason, value string
}

// priceScan is one pass over an import_prices file.
type priceScan struct {
	res     ImportPricesResult
	rej     rejections
	symbols map[string]bool
	// known caches the symbols known to be assets.
	known map[string]bool
	// created counts the assets the pass created (write pass only).
	created int
}

// ImportPrices is the import_prices handler. It reads the upload twice: a
// first pass checks every row (and which symbols are assets) and writes
// nothing, so that a file with more rejected rows than max_bad_ratio fails
// as a whole; the second upserts the accepted rows, a batch per transaction
// (unknown assets created in the batch's transaction when create_assets).
// Re-running it leaves the same prices.
func (im *Importer) ImportPrices(ctx context.Context, r job.Reporter, p *taskpb.ImportPricesParams) error {
	owner, admin, err := im.creator(ctx, r)
	if err != nil {
		return err
	}
	up, err := im.upload(ctx, p.GetUploadId(), owner, admin)
	if err != nil {
		return err
	}
	format := p.GetFormat()
	if format == "" {
		format = "csv"
	}
	ratio := p.GetMaxBadRatio()
	if ratio == 0 {
		ratio = DefaultMaxBadRatio
	}
	r.Progress(0, progressStepCheck, fmt.Sprintf("Checking %d bytes of %s (%s format)", up.Size, up.ID, format))
	check, err := im.scanPrices(ctx, r, up, p, false)
	if err != nil {
		return err
	}
	res := check.res
	res.UploadID, res.Format, res.MaxBadRatio = up.ID, format, ratio
	res.RowsRejected, res.Rejected = check.rej.n, check.rej.list()
	for _, rj := range res.Rejected[:min(len(res.Rejected), maxLoggedRejections)] {
		r.Log(job.Warn, "row rejected", map[string]any{"line": rj.Line, "reason": rj.Reason})
	}
	if res.RowsRead == 0 {
		return job.Permanent(fmt.Errorf("portfolio: import prices: %s has no data rows", up.ID))
	}
	if float64(res.RowsRejected) > ratio*float64(res.RowsRead) {
		_ = r.SetResult(res)
		first := res.Rejected[0]
		return job.Permanent(fmt.Errorf("%w: %d of %d rows (more than max_bad_ratio %g); nothing imported; first: line %d: %s",
			ErrTooManyBadRows, res.RowsRejected, res.RowsRead, ratio, first.Line, first.Reason))
	}
	r.Log(job.Info, "file checked", map[string]any{"rows": res.RowsRead, "rejected": res.RowsRejected, "symbols": len(check.symbols)})
	r.Progress(0.5, progressStepImport, fmt.Sprintf("Importing %d rows (%d rejected)", res.RowsRead-res.RowsRejected, res.RowsRejected))

	write, err := im.scanPrices(ctx, r, up, p, true)
	if err != nil {
		return err
	}
	res.RowsUpserted, res.RowsChanged, res.AssetsCreated = write.res.RowsUpserted, write.res.RowsChanged, write.created
	res.RowsRejected, res.Rejected, res.Symbols = write.rej.n, write.rej.list(), len(write.symbols)
	r.Log(job.Info, "prices imported", map[string]any{
		"rows_read": res.RowsRead, "rows_upserted": res.RowsUpserted, "rows_changed": res.RowsChanged,
		"rows_rejected": res.RowsRejected, "assets_created": res.AssetsCreated,
	})
	r.Progress(1, progressStepDone, fmt.Sprintf("Upserted %d prices of %d symbols; %d rows rejected",
		res.RowsUpserted, res.Symbols, res.RowsRejected))
	return r.SetResult(res)
}

// scanPrices makes one pass over the file: rows are parsed and gathered in
// batches; each batch's symbols are looked up, and with write its accepted
// rows upserted in one transaction.
func (im *Importer) scanPrices(ctx context.Context, r job.Reporter, up upload.Upload, p *taskpb.ImportPricesParams, write bool) (*priceScan, error) {
	rc, err := im.open(ctx, up)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	stooq := p.GetFormat() == "stooq"
	required := []string{"symbol", "date", "open", "high", "low", "close"}
	if stooq {
		required = required[1:]
	}
	f, err := openCSV(rc, csvLimits{MaxLineBytes: im.o.MaxLineBytes, MaxRows: im.o.MaxRows}, required, []string{"volume"})
	if err != nil {
		return nil, job.Permanent(err)
	}
	sc := &priceScan{symbols: map[string]bool{}, known: map[string]bool{}}
	batch := make([]priceRow, 0, im.o.BatchSize)
	flush := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("portfolio: import prices: cancelled at line %d: %w", batch[len(batch)-1].line, err)
		}
		if err := im.priceBatch(ctx, sc, batch, p.GetCreateAssets(), write); err != nil {
			return err
		}
		batch = batch[:0]
		base, span := 0.0, 0.5
		if write {
			base = 0.5
		}
		if up.Size > 0 {
			r.Progress(base+span*min(1, float64(f.cap.read)/float64(up.Size)), map[bool]string{false: progressStepCheck, true: progressStepImport}[write], "")
		}
		return nil
	}
	today := time.Now().UTC()
	for {
		rec, line, ok, err := f.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, job.Permanent(err)
		}
		sc.res.RowsRead++
		row := priceRow{line: line}
		if !ok {
			row.reason, row.value = fieldCountReason(len(rec), f.width), joined(rec)
		} else {
			sym := p.GetSymbol()
			if !stooq {
				sym = f.field(rec, "symbol")
			}
			row.symbol = sym
			row.reason, row.value = parsePriceRow(f, rec, sym, today, &row.bar)
		}
		batch = append(batch, row)
		if len(batch) == im.o.BatchSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// parsePriceRow reads a row's bar into b; it returns why the row is rejected
// and the offending value, or "" when it is fine.
func parsePriceRow(f *csvFile, rec []string, symbol string, today time.Time, b *price.Bar) (string, string) {
	if !symbolPattern.MatchString(symbol) {
		return "invalid symbol", symbol
	}
	ds := f.field(rec, "date")
	d, err := time.Parse(time.DateOnly, ds)
	if err != nil {
		return "invalid date, want YYYY-MM-DD", ds
	}
	if d.Year() < 1900 || d.After(today.AddDate(0, 0, 1)) {
		return "date out of range (1900 to tomorrow)", ds
	}
	b.Date = d
	for _, c := range []struct {
		name string
		dst  *float64
	}{{"open", &b.Open}, {"high", &b.High}, {"low", &b.Low}, {"close", &b.Close}} {
		s := f.field(rec, c.name)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return "invalid number in " + c.name, s
		}
		if v <= 0 {
			return c.name + " is not positive", s
		}
		*c.dst = v
	}
	if b.Low > b.High {
		return "low above high", f.field(rec, "low")
	}
	if f.has("volume") {
		v, err := price.ParseVolume(f.field(rec, "volume"))
		if err != nil {
			return "invalid volume", f.field(rec, "volume")
		}
		b.Volume = v
	}
	return "", ""
}

// priceBatch resolves a batch's symbols, records its rejected rows in file
// order and, with write, upserts its accepted rows (creating unknown assets
// first when createAssets) in one transaction. A (symbol, date) that
// appears twice in the batch is stored once, with its later row.
func (im *Importer) priceBatch(ctx context.Context, sc *priceScan, batch []priceRow, createAssets, write bool) error {
	var lookup []string
	for _, row := range batch {
		if row.reason == "" && !sc.known[row.symbol] && !slices.Contains(lookup, row.symbol) {
			lookup = append(lookup, row.symbol)
		}
	}
	var unknown []string
	if len(lookup) > 0 {
		found, err := knownSymbols(ctx, im.db, lookup)
		if err != nil {
			return fmt.Errorf("portfolio: import prices: %w", err)
		}
		for _, s := range lookup {
			if found[s] {
				sc.known[s] = true
			} else {
				unknown = append(unknown, s)
			}
		}
	}
	var rows barRows
	index := map[priceKey]int{}
	for _, row := range batch {
		if row.reason == "" && !sc.known[row.symbol] && !createAssets {
			row.reason, row.value = "unknown symbol (create_assets is off)", row.symbol
		}
		if row.reason != "" {
			sc.rej.add(row.line, row.reason, row.value)
			continue
		}
		sc.symbols[row.symbol] = true
		sc.res.RowsUpserted++
		k := priceKey{row.symbol, row.bar.Date}
		if i, dup := index[k]; dup {
			rows.opens[i], rows.highs[i], rows.lows[i], rows.cl[i], rows.volumes[i] =
				row.bar.Open, row.bar.High, row.bar.Low, row.bar.Close, row.bar.Volume
			continue
		}
		index[k] = rows.len()
		rows.add(row.symbol, []price.Bar{row.bar})
	}
	if !write || rows.len() == 0 {
		return nil
	}
	return im.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if createAssets && len(unknown) > 0 {
			res := tx.Exec(`INSERT INTO assets (symbol, name, kind) SELECT s, s, 'equity' FROM unnest(?::text[]) s
				ON CONFLICT (symbol) DO NOTHING`, pgArray[string](unknown))
			if res.Error != nil {
				return fmt.Errorf("portfolio: import prices: create assets: %w", res.Error)
			}
			sc.created += int(res.RowsAffected)
			for _, s := range unknown {
				sc.known[s] = true
			}
		}
		n, err := upsertBars(ctx, tx, &rows)
		if err != nil {
			return fmt.Errorf("portfolio: import prices: %w", err)
		}
		sc.res.RowsChanged += n
		return nil
	})
}

// priceKey is a prices row's key.
type priceKey struct {
	symbol string
	date   time.Time
}
