module github.com/taskforge/taskforge/services/monitor

go 1.26.0

require github.com/taskforge/taskforge/pkg v0.0.0

replace github.com/taskforge/taskforge/pkg => ../../pkg
