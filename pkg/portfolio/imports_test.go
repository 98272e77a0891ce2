package portfolio_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/upload"
)

// importBundle is a database with assets AAA, BBB and IDX, portfolios
// pf_op (key_op's: AAA and BBB) and pf_op2 (key_op2's), an upload store and
// an importer for which key_admin is the admin.
type importBundle struct {
	db      *gorm.DB
	uploads *upload.Store
	im      *portfolio.Importer
	ctx     context.Context
}

func setupImport(t testing.TB, o portfolio.ImportOptions) importBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("import-test-signing-key-0123456789"), "http://api.test", time.Minute)
	require.NoError(t, err)
	rs, err := result.New(pg.DB, l, result.Options{Signer: signer})
	require.NoError(t, err)
	ups, err := upload.New(pg.DB, rs, upload.Options{})
	require.NoError(t, err)
	o.IsAdmin = func(_ context.Context, id string) (bool, error) { return id == "key_admin", nil }
	im, err := portfolio.NewImporter(pg.DB, ups, nil, o)
	require.NoError(t, err)
	b := importBundle{db: pg.DB, uploads: ups, im: im, ctx: context.Background()}
	for _, q := range []string{
		`INSERT INTO assets (symbol, name, kind) VALUES ('AAA', 'A', 'equity'), ('BBB', 'B', 'equity'), ('IDX', 'I', 'index')`,
		`INSERT INTO portfolios (id, name, owner) VALUES ('pf_op', 'Op', 'key_op'), ('pf_op2', 'Op 2', 'key_op2')`,
		`INSERT INTO holdings (portfolio_id, asset_symbol, quantity, cost_basis) VALUES ('pf_op', 'AAA', 10, 100), ('pf_op', 'BBB', 20, 200), ('pf_op2', 'BBB', 1, 1)`,
	} {
		require.NoError(t, pg.DB.Exec(q).Error, q)
	}
	return b
}

// task makes a task row created by owner and a recorder for it.
func (b importBundle) task(t testing.TB, owner string) *job.Recorder {
	t.Helper()
	id := fmt.Sprintf("task_import_%d", time.Now().UnixNano())
	require.NoError(t, b.db.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, created_by)
		VALUES (?, 'import_prices', 'running', 'normal', 3, '{}', 60, ?)`, id, owner).Error)
	return &job.Recorder{ID: id}
}

func (b importBundle) upload(t testing.TB, owner, name, body string) string {
	t.Helper()
	up, err := b.uploads.Put(b.ctx, owner, name, "text/csv", strings.NewReader(body))
	require.NoError(t, err)
	return up.ID
}

func (b importBundle) prices(t *testing.T, symbol string) int {
	return count(t, b.db, `SELECT count(*) FROM prices WHERE asset_symbol = ?`, symbol)
}

const goodPrices = `Symbol,Date,Open,High,Low,Close,Volume
AAA,2024-01-02,10,11,9,10.5,1000
AAA,2024-01-03,10.5,12,10,11.5,1100
BBB,2024-01-02,20,21,19,20.5,
`

// TestImportPrices: the csv format's rows land in prices; bad rows are
// rejected with their line numbers and reasons (a formula-like symbol is
// echoed as it was, never evaluated) while under max_bad_ratio; a
// (symbol, date) twice in a batch is written once, with its later row; a
// second run leaves the same prices and changes none.
func TestImportPrices(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{BatchSize: 100})
	body := goodPrices + `"=HYPERLINK(""http://x"")",2024-01-02,1,1,1,1,1
AAA,2024-13-01,1,1,1,1,1
AAA,2024-01-04,1,2,3,1.5,1
AAA,2024-01-05,1,1
AAA,2024-01-03,10.5,12,10,11.75,1200
`
	id := b.upload(t, "key_op", "prices.csv", body)
	rec := b.task(t, "key_op")
	require.NoError(t, b.im.ImportPrices(b.ctx, rec, &taskpb.ImportPricesParams{UploadId: id, MaxBadRatio: 0.5}))
	res := decode[portfolio.ImportPricesResult](t, rec)
	require.Equal(t, 8, res.RowsRead)
	require.Equal(t, 4, res.RowsRejected)
	require.Equal(t, 4, res.RowsUpserted)
	require.EqualValues(t, 3, res.RowsChanged, "the duplicate (AAA, 2024-01-03) is written once")
	require.Equal(t, []portfolio.Rejected{
		{Line: 5, Reason: "invalid symbol", Value: `=HYPERLINK("http://x")`},
		{Line: 6, Reason: "invalid date, want YYYY-MM-DD", Value: "2024-13-01"},
		{Line: 7, Reason: "low above high", Value: "3"},
		{Line: 8, Reason: "4 fields, want 7 as the header", Value: "AAA,2024-01-05,1,1"},
	}, res.Rejected)
	require.Equal(t, 2, b.prices(t, "AAA"))
	require.Equal(t, 1, b.prices(t, "BBB"))
	var close float64
	require.NoError(t, b.db.Raw(`SELECT close FROM prices WHERE asset_symbol = 'AAA' AND date = '2024-01-03'`).Scan(&close).Error)
	require.Equal(t, 11.75, close, "the later row of a duplicate wins")
	require.Equal(t, float64(1), rec.Fraction())

	again := b.task(t, "key_op")
	require.NoError(t, b.im.ImportPrices(b.ctx, again, &taskpb.ImportPricesParams{UploadId: id, MaxBadRatio: 0.5}))
	res2 := decode[portfolio.ImportPricesResult](t, again)
	require.Zero(t, res2.RowsChanged, "a re-run changes nothing")
	require.Equal(t, 3, count(t, b.db, `SELECT count(*) FROM prices`))
}

// TestImportPricesBadRatio: past max_bad_ratio (default 1 %) the whole file
// fails permanently and no price is written, though its good rows come
// first.
func TestImportPricesBadRatio(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{BatchSize: 1})
	id := b.upload(t, "key_op", "prices.csv", goodPrices+"AAA,yesterday,1,1,1,1,1\n")
	rec := b.task(t, "key_op")
	err := b.im.ImportPrices(b.ctx, rec, &taskpb.ImportPricesParams{UploadId: id})
	require.ErrorIs(t, err, portfolio.ErrTooManyBadRows)
	require.True(t, job.IsPermanent(err))
	require.ErrorContains(t, err, "line 5")
	require.Zero(t, count(t, b.db, `SELECT count(*) FROM prices`))
	res := decode[portfolio.ImportPricesResult](t, rec)
	require.Equal(t, 1, res.RowsRejected)
}

// TestImportPricesAssets: an unknown symbol is rejected unless
// create_assets, which creates it (once) with its prices.
func TestImportPricesAssets(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "prices.csv", "symbol,date,open,high,low,close,volume\nNEWCO,2024-01-02,1,2,0.5,1.5,10\nAAA,2024-01-02,1,2,0.5,1.5,10\n")
	rec := b.task(t, "key_op")
	require.ErrorIs(t, b.im.ImportPrices(b.ctx, rec, &taskpb.ImportPricesParams{UploadId: id, MaxBadRatio: 0.4}), portfolio.ErrTooManyBadRows)
	require.Equal(t, "unknown symbol (create_assets is off)", decode[portfolio.ImportPricesResult](t, rec).Rejected[0].Reason)

	rec = b.task(t, "key_op")
	require.NoError(t, b.im.ImportPrices(b.ctx, rec, &taskpb.ImportPricesParams{UploadId: id, CreateAssets: true}))
	res := decode[portfolio.ImportPricesResult](t, rec)
	require.Equal(t, 1, res.AssetsCreated)
	require.Equal(t, 1, b.prices(t, "NEWCO"))
	require.Equal(t, 1, count(t, b.db, `SELECT count(*) FROM assets WHERE symbol = 'NEWCO' AND kind = 'equity'`))
}

// TestImportPricesStooq: one symbol's Stooq CSV (Date,Open,High,Low,Close,
// Volume) is imported for the symbol param.
func TestImportPricesStooq(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "bbb.csv", "\ufeffDate,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1.5,2,1,1.8,12\n")
	rec := b.task(t, "key_op")
	require.NoError(t, b.im.ImportPrices(b.ctx, rec, &taskpb.ImportPricesParams{UploadId: id, Format: "stooq", Symbol: "BBB"}))
	require.Equal(t, 2, b.prices(t, "BBB"))
}

// TestImportCSVBomb: a record longer than the line cap (one line, or a
// quoted field over many lines), more rows than the row cap and a header
// without a required column refuse the whole file, permanently, writing
// nothing.
func TestImportCSVBomb(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{MaxLineBytes: 256, MaxRows: 5})
	header := "symbol,date,open,high,low,close,volume\n"
	cases := []struct {
		name, body string
		want       error
	}{
		{"long line", header + "AAA,2024-01-02," + strings.Repeat("1", 300) + ",1,1,1,1\n", portfolio.ErrLineTooLong},
		{"quoted newlines", header + `AAA,"` + strings.Repeat("x\n", 200) + `",1,1,1,1,1` + "\n", portfolio.ErrLineTooLong},
		{"too many rows", header + strings.Repeat("AAA,2024-01-02,1,1,1,1,1\n", 6), portfolio.ErrTooManyRows},
		{"bad header", "symbol,date,open\nAAA,2024-01-02,1\n", portfolio.ErrBadHeader},
	}
	for _, tc := range cases {
		id := b.upload(t, "key_op", "bomb.csv", tc.body)
		err := b.im.ImportPrices(b.ctx, b.task(t, "key_op"), &taskpb.ImportPricesParams{UploadId: id})
		require.ErrorIs(t, err, tc.want, tc.name)
		require.True(t, job.IsPermanent(err), tc.name)
	}
	require.Zero(t, count(t, b.db, `SELECT count(*) FROM prices`))
}

// TestImportUploadOwnership: a task reads only its creator's uploads (an
// admin's any); another's is not found, as an unknown id.
func TestImportUploadOwnership(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "prices.csv", goodPrices)
	err := b.im.ImportPrices(b.ctx, b.task(t, "key_op2"), &taskpb.ImportPricesParams{UploadId: id})
	require.ErrorIs(t, err, portfolio.ErrUploadNotFound)
	require.True(t, job.IsPermanent(err))
	require.NoError(t, b.im.ImportPrices(b.ctx, b.task(t, "key_admin"), &taskpb.ImportPricesParams{UploadId: id}))
	err = b.im.ImportPrices(b.ctx, b.task(t, "key_op"), &taskpb.ImportPricesParams{UploadId: "upl_01hz3k8c2m4n5p6q7r8s9t0v1w"})
	require.ErrorIs(t, err, portfolio.ErrUploadNotFound)
}

// TestImportCancelled: a cancelled import writes nothing and is not
// permanent.
func TestImportCancelled(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "prices.csv", goodPrices)
	rec := b.task(t, "key_op")
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	err := b.im.ImportPrices(ctx, rec, &taskpb.ImportPricesParams{UploadId: id})
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	require.False(t, job.IsPermanent(err))
	require.Zero(t, count(t, b.db, `SELECT count(*) FROM prices`))
}

func holdings(t *testing.T, db *gorm.DB, pid string) map[string]float64 {
	t.Helper()
	var rows []struct {
		AssetSymbol string
		Quantity    float64
	}
	require.NoError(t, db.Raw(`SELECT asset_symbol, quantity FROM holdings WHERE portfolio_id = ?`, pid).Scan(&rows).Error)
	out := map[string]float64{}
	for _, r := range rows {
		out[r.AssetSymbol] = r.Quantity
	}
	return out
}

// TestImportHoldingsReplaceAndMerge: replace makes a portfolio's holdings
// exactly the file's; merge adds and updates them and keeps the rest; a
// re-run changes nothing.
func TestImportHoldingsReplaceAndMerge(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "holdings.csv", "portfolio_id,symbol,quantity,cost_basis\npf_op,AAA,5,55\npf_op,IDX,2,\n")

	rec := b.task(t, "key_op")
	require.NoError(t, b.im.ImportHoldings(b.ctx, rec, &taskpb.ImportHoldingsParams{UploadId: id, Mode: "merge"}))
	require.Equal(t, map[string]float64{"AAA": 5, "BBB": 20, "IDX": 2}, holdings(t, b.db, "pf_op"))
	res := decode[portfolio.ImportHoldingsResult](t, rec)
	require.Equal(t, []portfolio.HoldingsImported{{PortfolioID: "pf_op", Before: 2, After: 3, Upserted: 2}}, res.Portfolios)

	rec = b.task(t, "key_op")
	require.NoError(t, b.im.ImportHoldings(b.ctx, rec, &taskpb.ImportHoldingsParams{UploadId: id}))
	require.Equal(t, map[string]float64{"AAA": 5, "IDX": 2}, holdings(t, b.db, "pf_op"))
	res = decode[portfolio.ImportHoldingsResult](t, rec)
	require.Equal(t, "replace", res.Mode)
	require.Equal(t, []portfolio.HoldingsImported{{PortfolioID: "pf_op", Before: 3, After: 2, Upserted: 2, Removed: 1}}, res.Portfolios)
	var cost float64
	require.NoError(t, b.db.Raw(`SELECT cost_basis FROM holdings WHERE portfolio_id = 'pf_op' AND asset_symbol = 'AAA'`).Scan(&cost).Error)
	require.Equal(t, 55.0, cost)

	require.NoError(t, b.im.ImportHoldings(b.ctx, b.task(t, "key_op"), &taskpb.ImportHoldingsParams{UploadId: id}))
	require.Equal(t, map[string]float64{"AAA": 5, "IDX": 2}, holdings(t, b.db, "pf_op"))
	require.Equal(t, map[string]float64{"BBB": 1}, holdings(t, b.db, "pf_op2"), "another portfolio is untouched")
}

// TestImportHoldingsReports: unknown symbols leave their portfolio
// unchanged and are reported; unknown portfolios and another owner's are
// reported alike; with nothing left to import the task fails permanently;
// the portfolio_id param takes a file without the column; an admin writes
// any portfolio.
func TestImportHoldingsReports(t *testing.T) {
	t.Parallel()
	b := setupImport(t, portfolio.ImportOptions{})
	id := b.upload(t, "key_op", "holdings.csv", "portfolio_id,symbol,quantity,cost_basis\n"+
		"pf_op,AAA,5,55\npf_op,NOPE,1,1\npf_nope,AAA,1,1\npf_op2,AAA,1,1\npf_op,AAA,6,1\n")
	rec := b.task(t, "key_op")
	err := b.im.ImportHoldings(b.ctx, rec, &taskpb.ImportHoldingsParams{UploadId: id})
	require.ErrorIs(t, err, portfolio.ErrNothingImported)
	require.True(t, job.IsPermanent(err))
	res := decode[portfolio.ImportHoldingsResult](t, rec)
	require.Equal(t, []string{"NOPE"}, res.UnknownSymbols)
	require.Equal(t, []string{"pf_nope", "pf_op2"}, res.UnknownPortfolios)
	require.Equal(t, []string{"pf_op"}, res.PortfoliosSkipped)
	require.Equal(t, []portfolio.Rejected{
		{Line: 3, Reason: "unknown symbol", Value: "NOPE"},
		{Line: 4, Reason: "unknown portfolio", Value: "pf_nope"},
		{Line: 5, Reason: "unknown portfolio", Value: "pf_op2"},
		{Line: 6, Reason: "a second position in AAA (first on line 2)", Value: "AAA"},
	}, res.Rejected)
	require.Equal(t, map[string]float64{"AAA": 10, "BBB": 20}, holdings(t, b.db, "pf_op"), "unchanged")

	// The param names the portfolio; the file needs no column; another's
	// portfolio is unknown to an operator, not to an admin.
	single := b.upload(t, "key_op", "one.csv", "symbol,quantity\nBBB,7\n")
	err = b.im.ImportHoldings(b.ctx, b.task(t, "key_op"), &taskpb.ImportHoldingsParams{UploadId: single, PortfolioId: "pf_op2"})
	require.ErrorIs(t, err, portfolio.ErrUnknownPortfolio)
	require.NoError(t, b.im.ImportHoldings(b.ctx, b.task(t, "key_op"), &taskpb.ImportHoldingsParams{UploadId: single, PortfolioId: "pf_op"}))
	require.Equal(t, map[string]float64{"BBB": 7}, holdings(t, b.db, "pf_op"))
	require.NoError(t, b.im.ImportHoldings(b.ctx, b.task(t, "key_admin"), &taskpb.ImportHoldingsParams{UploadId: single, PortfolioId: "pf_op2", Mode: "merge"}))
	require.Equal(t, map[string]float64{"BBB": 7}, holdings(t, b.db, "pf_op2"))
}

// BenchmarkImportPrices imports a 100,000-row CSV (100 symbols, 1,000 days)
// with import_prices and reports rows per second; the file is read twice
// (the check, then the write) and written in batches of 1000 rows; the
// first run inserts, later ones find every bar stored already. An
// in-process micro-benchmark: no worker runtime, queue or API.
func BenchmarkImportPrices(b *testing.B) {
	ib := setupImport(b, portfolio.ImportOptions{})
	var sb strings.Builder
	sb.WriteString("symbol,date,open,high,low,close,volume\n")
	var symbols []string
	for i := range 100 {
		symbols = append(symbols, fmt.Sprintf("('S%03d', 'S', 'equity')", i))
	}
	require.NoError(b, ib.db.Exec("INSERT INTO assets (symbol, name, kind) VALUES "+strings.Join(symbols, ",")).Error)
	day := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := range 1000 {
		for i := range 100 {
			fmt.Fprintf(&sb, "S%03d,%s,%d.5,%d.75,%d.25,%d.5,%d\n", i, day.AddDate(0, 0, d).Format(time.DateOnly), 10+i, 11+i, 9+i, 10+i, 1000+d)
		}
	}
	id := ib.upload(b, "key_op", "bench.csv", sb.String())
	b.ResetTimer()
	for b.Loop() {
		require.NoError(b, ib.im.ImportPrices(ib.ctx, ib.task(b, "key_op"), &taskpb.ImportPricesParams{UploadId: id}))
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
}
