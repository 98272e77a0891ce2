-- +goose Up
-- The seeded weekly_report schedule asked for a portfolio_summary without a
-- portfolio_id, which can never succeed; seeds now ask for the risk report over
-- every portfolio. Repair the seeded row where nobody has edited it.
UPDATE schedules SET params = '{"report": "risk"}'::jsonb, updated_at = now()
WHERE name = 'weekly_report' AND created_by = 'system' AND type = 'generate_reports'
  AND params = '{"report": "portfolio_summary"}'::jsonb;

-- +goose Down
SELECT 1;
