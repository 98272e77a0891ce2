package notifyjob

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// EmailResult is send_email's result.
type EmailResult struct {
	// Recipients counts the to and cc addresses.
	Recipients int `json:"recipients"`
	// Attachments counts the attached files.
	Attachments int `json:"attachments"`
	// AttachmentBytes is their total size.
	AttachmentBytes int64 `json:"attachment_bytes"`
}

// SendEmail is the send_email handler. It attaches the results of the tasks
// named in attachments — their stored result files, or, for a task without
// files, its JSON result as "<task_id>.json" — and sends the mail over SMTP.
//
// An attachment task must have been created by the email task's creator, unless
// that creator is an admin; otherwise, or if it does not exist, the task fails
// permanently naming the id. An attachment task that has not finished yet makes
// the attempt fail with a retryable error; one that failed or was cancelled, or
// attachments larger than the cap, fail permanently.
//
// The mail is one SMTP message to every recipient, so they are reached
// together: once it is accepted they are recorded (notification_deliveries),
// and a retry of a task that had sent it does not send it again. A reply
// lost before the record is written may still deliver a duplicate.
func (s *Service) SendEmail(ctx context.Context, r job.Reporter, p *taskpb.SendEmailParams) error {
	const op = "send email"
	if s.mailer == nil {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w", op, ErrEmailNotConfigured))
	}
	r.Progress(0, stepAttachments, "")
	atts, size, err := s.loadAttachments(ctx, r, p.GetAttachments())
	if err != nil {
		return err
	}
	n := len(p.GetTo()) + len(p.GetCc())
	done, err := s.delivered(ctx, r.TaskID(), deliveryEmail, p.GetTo(), p.GetCc())
	if err != nil {
		return err
	}
	if allDelivered(done, p.GetTo(), p.GetCc()) {
		r.Log(job.Info, "email already sent by an earlier attempt", map[string]any{"recipients": n})
	} else {
		r.Progress(0.5, stepSending, fmt.Sprintf("Sending to %d recipients with %d attachments", n, len(atts)))
		err = s.mailer.Send(ctx, notify.Message{
			To: p.GetTo(), Cc: p.GetCc(), Subject: p.GetSubject(),
			Text: p.GetBodyText(), HTML: p.GetBodyHtml(), Attachments: atts,
		})
		if err != nil {
			return deliveryError(op, err)
		}
		s.markDelivered(ctx, r, deliveryEmail, append(append([]string(nil), p.GetTo()...), p.GetCc()...)...)
	}
	r.Log(job.Info, "email sent", map[string]any{"recipients": n, "attachments": len(atts), "attachment_bytes": size})
	s.log.Debug("email sent", job.LogFields(r, zap.Int("recipients", n), zap.Int("attachments", len(atts)))...)
	r.Progress(1, stepDone, fmt.Sprintf("Email sent to %d recipients", n))
	return setResult(r, op, EmailResult{Recipients: n, Attachments: len(atts), AttachmentBytes: size})
}

// attachmentTask is what send_email reads of an attachment task's row.
type attachmentTask struct {
	ID        string
	CreatedBy string
	Status    string
	Result    store.JSON
}

// loadAttachments checks that the email task's creator may see each attachment
// task and loads its results, within the size cap.
func (s *Service) loadAttachments(ctx context.Context, r job.Reporter, ids []string) ([]notify.Attachment, int64, error) {
	const op = "send email"
	ids = unique(ids)
	if len(ids) == 0 {
		return nil, 0, nil
	}
	owner, err := s.taskOwner(ctx, op, r.TaskID())
	if err != nil {
		return nil, 0, err
	}
	var rows []attachmentTask
	if err := s.db.WithContext(ctx).Table("tasks").Select("id, created_by, status, result").
		Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, 0, fmt.Errorf("notifyjob: %s: read attachment tasks: %w", op, err)
	}
	byID := make(map[string]attachmentTask, len(rows))
	for _, row := range rows {
		byID[row.ID] = row
	}
	admin, adminKnown := false, false
	l := &attachmentLoader{s: s, names: map[string]bool{}}
	for i, id := range ids {
		row, ok := byID[id]
		if ok && (row.CreatedBy != owner || owner == "") {
			if !adminKnown {
				if admin, err = s.isAdmin(ctx, owner); err != nil {
					return nil, 0, fmt.Errorf("notifyjob: %s: %w", op, err)
				}
				adminKnown = true
			}
			ok = admin
		}
		if !ok {
			return nil, 0, job.Permanent(fmt.Errorf("notifyjob: %s: attachment %s: %w", op, id, ErrAttachmentNotVisible))
		}
		switch row.Status {
		case "completed":
		case "failed", "cancelled":
			return nil, 0, job.Permanent(fmt.Errorf("notifyjob: %s: attachment %s: %w (status %s)", op, id, ErrAttachmentFailed, row.Status))
		default:
			// Retryable: the attachment task may still complete.
			return nil, 0, fmt.Errorf("notifyjob: %s: attachment %s has not finished (status %s)", op, id, row.Status)
		}
		if err := l.load(ctx, row); err != nil {
			return nil, 0, err
		}
		r.Progress(0.5*float64(i+1)/float64(len(ids)), stepAttachments, "")
	}
	return l.atts, l.size, nil
}

// attachmentLoader accumulates attachments within the size cap.
type attachmentLoader struct {
	s     *Service
	atts  []notify.Attachment
	size  int64
	names map[string]bool
}

// tooLarge is the permanent error for attachments over the cap.
func (l *attachmentLoader) tooLarge(id string) error {
	return job.Permanent(fmt.Errorf("notifyjob: send email: attachment %s: %w: more than %d bytes in total",
		id, ErrAttachmentsTooLarge, l.s.maxAttachment))
}

// add appends one attachment, renaming it if another has its name.
func (l *attachmentLoader) add(id, name, contentType string, data []byte) {
	if l.names[name] {
		name = id + "-" + name
	}
	l.names[name] = true
	l.atts = append(l.atts, notify.Attachment{Name: name, ContentType: contentType, Data: data})
	l.size += int64(len(data))
}

// load attaches a completed task's result files, or its JSON result if it has
// no files.
func (l *attachmentLoader) load(ctx context.Context, row attachmentTask) error {
	const op = "send email"
	var files []result.Result
	if l.s.results != nil {
		var err error
		if files, err = l.s.results.ForTask(ctx, row.ID); err != nil {
			return fmt.Errorf("notifyjob: %s: attachment %s: %w", op, row.ID, err)
		}
	}
	for _, res := range files {
		if l.size+res.Size > l.s.maxAttachment {
			return l.tooLarge(row.ID)
		}
		data, err := l.read(ctx, res)
		if err != nil {
			return err
		}
		l.add(row.ID, result.SanitizeFilename(res.Name), res.ContentType, data)
	}
	if len(files) > 0 {
		return nil
	}
	if len(row.Result) == 0 || string(row.Result) == "null" {
		return job.Permanent(fmt.Errorf("notifyjob: %s: attachment %s: %w", op, row.ID, ErrNoAttachmentResult))
	}
	if l.size+int64(len(row.Result)) > l.s.maxAttachment {
		return l.tooLarge(row.ID)
	}
	l.add(row.ID, row.ID+".json", "application/json", []byte(row.Result))
	return nil
}

// read reads one result file, refusing more bytes than the cap leaves.
func (l *attachmentLoader) read(ctx context.Context, res result.Result) ([]byte, error) {
	const op = "send email"
	rc, err := l.s.results.Open(ctx, res)
	if errors.Is(err, result.ErrExpired) || errors.Is(err, result.ErrNotFound) {
		return nil, job.Permanent(fmt.Errorf("notifyjob: %s: attachment %s: %w", op, res.TaskID, err))
	}
	if err != nil {
		return nil, fmt.Errorf("notifyjob: %s: attachment %s: %w", op, res.TaskID, err)
	}
	defer rc.Close()
	left := l.s.maxAttachment - l.size
	data, err := io.ReadAll(io.LimitReader(rc, left+1))
	if err != nil {
		return nil, fmt.Errorf("notifyjob: %s: attachment %s: read %s: %w", op, res.TaskID, res.ID, err)
	}
	if int64(len(data)) > left {
		return nil, l.tooLarge(res.TaskID)
	}
	return data, nil
}

// unique returns ids without repeats, in order.
func unique(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
