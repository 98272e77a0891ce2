package groupcommit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/groupcommit"
)

// recorder is a commit that keeps its batches and may be held.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	hold    chan struct{} // when not nil, the first commit waits on it
	entered chan struct{}
	err     error
}

func (r *recorder) commit(ctx context.Context, items []int) ([]int, error) {
	r.mu.Lock()
	r.batches = append(r.batches, append([]int(nil), items...))
	first := len(r.batches) == 1
	r.mu.Unlock()
	if first && r.hold != nil {
		close(r.entered)
		<-r.hold
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]int, len(items))
	for i, v := range items {
		out[i] = v * 10
	}
	return out, nil
}

func (r *recorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []int
	for _, b := range r.batches {
		n = append(n, len(b))
	}
	return n
}

// TestItemsWaitingShareOneCommit: an idle committer writes an item alone at
// once; items that arrive while a commit runs share the next one, and each
// caller gets its own result.
func TestItemsWaitingShareOneCommit(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{}), entered: make(chan struct{})}
	c := groupcommit.New(groupcommit.Options{Workers: 1, Max: 64}, rec.commit)
	defer c.Close()
	ctx := context.Background()

	first := make(chan int, 1)
	go func() {
		v, err := c.Do(ctx, 1)
		require.NoError(t, err)
		first <- v
	}()
	<-rec.entered // the lone item is being committed, alone

	const n = 20
	var wg sync.WaitGroup
	got := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Do(ctx, 100+i)
			require.NoError(t, err)
			got[i] = v
		}()
	}
	// All twenty wait in the queue behind the held commit.
	require.Eventually(t, func() bool { return c.Waiting() == n }, 5*time.Second, time.Millisecond)
	close(rec.hold)
	wg.Wait()
	require.Equal(t, 10, <-first)
	for i := range n {
		require.Equal(t, (100+i)*10, got[i])
	}
	require.Equal(t, []int{1, n}, rec.sizes())
}

// TestCommitErrorIsEveryItems: a failed commit fails each of its callers.
func TestCommitErrorIsEveryItems(t *testing.T) {
	t.Parallel()
	boom := errors.New("database away")
	rec := &recorder{err: boom}
	c := groupcommit.New(groupcommit.Options{}, rec.commit)
	defer c.Close()
	_, err := c.Do(context.Background(), 7)
	require.ErrorIs(t, err, boom)
}

// TestEndedCallersAreLeftOut: an item whose caller stopped waiting before its
// commit is not written, and the commit runs under its items' latest deadline.
func TestEndedCallersAreLeftOut(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{}), entered: make(chan struct{})}
	var deadlines []time.Time
	var mu sync.Mutex
	commit := func(ctx context.Context, items []int) ([]int, error) {
		d, _ := ctx.Deadline()
		mu.Lock()
		deadlines = append(deadlines, d)
		mu.Unlock()
		return rec.commit(ctx, items)
	}
	c := groupcommit.New(groupcommit.Options{Workers: 1, Timeout: time.Hour}, commit)
	defer c.Close()
	go func() { _, _ = c.Do(context.Background(), 1) }()
	<-rec.entered

	gone, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(gone, 2)
		errc <- err
	}()
	far := time.Now().Add(30 * time.Minute)
	farCtx, farCancel := context.WithDeadline(context.Background(), far)
	defer farCancel()
	kept := make(chan int, 1)
	go func() {
		v, err := c.Do(farCtx, 3)
		require.NoError(t, err)
		kept <- v
	}()
	require.Eventually(t, func() bool { return c.Waiting() == 2 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	close(rec.hold)
	require.Equal(t, 30, <-kept)
	rec.mu.Lock()
	require.Equal(t, []int{3}, rec.batches[1], "the abandoned item is not written")
	rec.mu.Unlock()
	mu.Lock()
	require.WithinDuration(t, far, deadlines[1], time.Second)
	mu.Unlock()
}

// TestCloseCommitsWhatWasHandedOver: Close writes the items already handed
// over before it returns; later items are refused with ErrClosed.
func TestCloseCommitsWhatWasHandedOver(t *testing.T) {
	t.Parallel()
	rec := &recorder{hold: make(chan struct{}), entered: make(chan struct{})}
	c := groupcommit.New(groupcommit.Options{Workers: 1}, rec.commit)
	results := make(chan int, 5)
	do := func(i int) {
		v, err := c.Do(context.Background(), i)
		require.NoError(t, err)
		results <- v
	}
	go do(1)
	<-rec.entered
	for i := range 4 {
		go do(i + 2)
	}
	require.Eventually(t, func() bool { return c.Waiting() == 4 }, 5*time.Second, time.Millisecond)
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	close(rec.hold)
	<-closed
	sum := 0
	for range 5 {
		sum += <-results
	}
	require.Equal(t, (1+2+3+4+5)*10, sum)
	_, err := c.Do(context.Background(), 9)
	require.ErrorIs(t, err, groupcommit.ErrClosed)
	c.Close() // again: a no-op
}
