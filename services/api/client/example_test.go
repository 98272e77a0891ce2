package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/taskforge/taskforge/services/api/client"
)

// A stand-in for the API, so that the examples run; point the client at the
// real one (e.g. http://127.0.0.1:8080) instead.
func exampleAPI() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"task_id":"task_1","status":"pending","priority":"normal","estimated_duration":5,"created_at":"2026-01-01T00:00:00Z","scheduled_for":"2026-01-01T00:00:00Z"}`)
	})
	mux.Handle("GET /api/v1/tasks/{id}/events", newScript(0))
	return httptest.NewServer(mux)
}

// Create a task, then follow it until it ends.
func ExampleClient_WatchTask() {
	api := exampleAPI()
	defer api.Close()
	ctx := context.Background()

	c, err := client.NewClientWithResponses(api.URL, client.WithBearerToken("tfk_your_api_key"))
	if err != nil {
		panic(err)
	}
	params := map[string]any{"portfolio_id": "pf_demo_growth"}
	created, err := c.CreateTaskWithResponse(ctx, nil, client.CreateTaskJSONRequestBody{Type: "refresh_portfolio", Params: &params})
	if err != nil {
		panic(err)
	}
	if err := client.ErrorFrom(created.StatusCode(), created.HTTPResponse.Header.Get("Content-Type"), created.Body); err != nil {
		panic(err) // e.g. "Unprocessable Content: invalid params\n  params.portfolio_id: required"
	}
	id := created.JSON201.TaskId

	// ClientWithResponses embeds the plain Client, which reads the streams.
	raw := c.ClientInterface.(*client.Client)
	final, err := raw.WatchTask(ctx, id, client.WatchOptions{OnEvent: func(ev client.Event) error {
		if ev.Task != nil {
			fmt.Printf("%s %3.0f%%\n", ev.Task.Status, 100*ev.Task.Progress)
		}
		return nil
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println("ended:", final.Status)
	// Output:
	// pending   0%
	// running   0%
	// running  50%
	// completed 100%
	// ended: completed
}
