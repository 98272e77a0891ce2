package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Listen holds one connection of db that LISTENs on channel and calls pass
// with the payloads of the notifications that arrived since its last call
// (none on the first call, and when the wait it returned ran out): several
// notifications that arrive together wake one pass. It returns when ctx ends
// (nil) or the connection fails (the error; the caller polls and listens
// again). channel must be a plain identifier.
func Listen(ctx context.Context, db *gorm.DB, channel string, pass func(ctx context.Context, payloads []string) time.Duration) error {
	return WithPgx(ctx, db, func(pc *pgx.Conn) error {
		if _, err := pc.Exec(ctx, "LISTEN "+channel); err != nil {
			return err
		}
		defer func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_, _ = pc.Exec(uctx, "UNLISTEN "+channel)
		}()
		var payloads []string
		for {
			wait := pass(ctx, payloads)
			payloads = payloads[:0]
			wctx, cancel := context.WithTimeout(ctx, wait)
			n, err := pc.WaitForNotification(wctx)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if pc.PgConn().IsClosed() {
				return fmt.Errorf("store: listen connection closed: %w", err)
			}
			if err != nil {
				// The wait ran out (the caller's poll), or something
				// unexpected but not fatal on an open connection: pass again.
				continue
			}
			payloads = append(payloads, n.Payload)
			// Take the notifications already queued: one pass serves them all.
			for {
				dctx, cancel := context.WithTimeout(ctx, time.Millisecond)
				n, err := pc.WaitForNotification(dctx)
				cancel()
				if err != nil {
					break
				}
				payloads = append(payloads, n.Payload)
			}
		}
	})
}
