package taskservice

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestDirectIndexesExist: for every filter directIndexes names, the migrated
// schema has an index on tasks whose key columns are the filter's columns
// and then the sort key and id, so that its pages are one ordered range of
// it. An index dropped or changed without the map fails here.
func TestDirectIndexesExist(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	var defs []string
	require.NoError(t, pg.DB.Raw(`SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'tasks'`).Scan(&defs).Error)
	keyCols := regexp.MustCompile(`USING btree \(([^)]*)\)`)
	var indexes [][]string
	for _, d := range defs {
		if m := keyCols.FindStringSubmatch(d); m != nil {
			indexes = append(indexes, strings.Split(strings.ReplaceAll(m[1], " ", ""), ","))
		}
	}
	require.NotEmpty(t, indexes)
	for entry := range directIndexes {
		key, cols, _ := strings.Cut(entry, "|")
		var want []string
		if cols != "" {
			want = strings.Split(cols, ",")
		}
		want = append(want, key, "id")
		require.True(t, slices.ContainsFunc(indexes, func(ix []string) bool { return slices.Equal(ix, want) }),
			"%s: no index on tasks (%s); the indexes: %v", entry, strings.Join(want, ", "), indexes)
	}
}
