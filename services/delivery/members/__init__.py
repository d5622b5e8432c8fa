"""The member directory: each member's contact details, locale, preferred channel, notification
opt-outs and employment status, kept up to date by HR systems (`member.upserted`, CSV import) and
corrected by ops. One-time codes and member notifications reach members through it."""
