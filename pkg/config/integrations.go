package config

// SMTPConfig configures outgoing mail.
type SMTPConfig struct {
	// Host and Port of the SMTP server. Defaults "127.0.0.1" and 1025.
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
	// Username and Password authenticate when set.
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password" secret:"true"`
	// From is the sender address. Default "taskforge@localhost".
	From string `mapstructure:"from"`
	// TLS is "starttls", "tls" or "none". Default "starttls" in production and
	// "none" in development.
	TLS string `mapstructure:"tls"`
}

// AlertsConfig configures send_alert's channels.
type AlertsConfig struct {
	SlackWebhookURL string `mapstructure:"slack_webhook_url" secret:"true"`
	SMSURL          string `mapstructure:"sms_url"`
	SMSAccount      string `mapstructure:"sms_account"`
	SMSToken        string `mapstructure:"sms_token" secret:"true"`
	SMSFrom         string `mapstructure:"sms_from"`
	PushURL         string `mapstructure:"push_url"`
	PushToken       string `mapstructure:"push_token" secret:"true"`
}

// PricesConfig selects the price provider.
type PricesConfig struct {
	// Provider is "simulated" or "stooq". Default "simulated".
	Provider string `mapstructure:"provider"`
	// StooqBaseURL is the Stooq CSV endpoint. Default "https://stooq.com".
	StooqBaseURL string `mapstructure:"stooq_base_url"`
	// BatchSize is the number of symbols fetched and upserted per transaction.
	// Default 100.
	BatchSize int `mapstructure:"batch_size"`
}
