package config

import "time"

// WorkflowsConfig configures workflows (package workflow).
type WorkflowsConfig struct {
	// MaxSteps is the most steps a workflow may have; a bigger one is a 422.
	// Default 100.
	MaxSteps int `mapstructure:"max_steps"`
	// Sweep is how often the scheduler looks for workflows left due (a crash
	// between a step's end and its workflow's advance). Default 5s.
	Sweep time.Duration `mapstructure:"sweep"`
}

// validateWorkflows checks the workflows section.
func (c Config) validateWorkflows(bad func(string, any, string)) {
	w := c.Workflows
	if w.MaxSteps < 1 || w.MaxSteps > 1000 {
		bad("workflows.max_steps", w.MaxSteps, "must be between 1 and 1000")
	}
	if w.Sweep < 100*time.Millisecond || w.Sweep > time.Hour {
		bad("workflows.sweep", w.Sweep, "must be between 100ms and 1h")
	}
}
