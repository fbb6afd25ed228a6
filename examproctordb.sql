-- Exam proctoring platform: MySQL/MariaDB schema for a new install.
-- Generated from proctor/models.py by `flask --app app dump-schema`; do not edit by hand
-- (a test regenerates it and compares). Import with: mysql -u root < examproctordb.sql
-- Later schema changes arrive as Alembic migrations (migrations/), which the app applies at start.

CREATE DATABASE IF NOT EXISTS `examproctordb` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE `examproctordb`;

CREATE TABLE students (
	`ID` INTEGER NOT NULL AUTO_INCREMENT, 
	`Name` VARCHAR(100) NOT NULL, 
	`Email` VARCHAR(254) NOT NULL, 
	`EmailFolded` VARCHAR(254) NOT NULL, 
	`PasswordHash` VARCHAR(100) NOT NULL, 
	`Role` VARCHAR(16) NOT NULL, 
	`IsActive` BOOL NOT NULL, 
	`CreatedAt` DATETIME NOT NULL, 
	`LastLoginAt` DATETIME, 
	`RulesAcceptedVersion` VARCHAR(32), 
	`RulesAcceptedAt` DATETIME, 
	`SessionVersion` INTEGER NOT NULL DEFAULT '0', 
	CONSTRAINT pk_students PRIMARY KEY (`ID`), 
	CONSTRAINT ck_students_role CHECK (Role IN ('ADMIN', 'STUDENT')), 
	CONSTRAINT `uq_students_Email` UNIQUE (`Email`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX `ix_students_EmailFolded` ON students (`EmailFolded`);

CREATE TABLE audit_log (
	id INTEGER NOT NULL AUTO_INCREMENT, 
	actor_id INTEGER, 
	action VARCHAR(64) NOT NULL, 
	target_type VARCHAR(32), 
	target_id INTEGER, 
	details TEXT NOT NULL, 
	client_address VARCHAR(64), 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_audit_log PRIMARY KEY (id), 
	CONSTRAINT fk_audit_log_actor_id_students FOREIGN KEY(actor_id) REFERENCES students (`ID`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX ix_audit_log_actor_id ON audit_log (actor_id);
CREATE INDEX ix_audit_log_created_at ON audit_log (created_at);

CREATE TABLE exams (
	`ExamID` INTEGER NOT NULL AUTO_INCREMENT, 
	`Title` VARCHAR(200) NOT NULL, 
	`Description` TEXT NOT NULL, 
	`DurationMinutes` INTEGER NOT NULL, 
	`PassMarkPercent` INTEGER NOT NULL, 
	`IsPublished` BOOL NOT NULL, 
	`AutoTerminate` BOOL NOT NULL, 
	`DisabledRules` VARCHAR(500) NOT NULL, 
	`Thresholds` TEXT NOT NULL, 
	`RequireLiveness` BOOL NOT NULL DEFAULT '1', 
	`ScreenShare` VARCHAR(16) NOT NULL DEFAULT 'off', 
	`ScreenshotIntervalS` INTEGER NOT NULL DEFAULT '15', 
	`DisplaysPolicy` VARCHAR(16) NOT NULL DEFAULT 'warn', 
	`BlockCopyPaste` BOOL NOT NULL DEFAULT '0', 
	`RequireRoomScan` BOOL NOT NULL DEFAULT '0', 
	`CreatedBy` INTEGER, 
	`CreatedAt` DATETIME NOT NULL, 
	CONSTRAINT pk_exams PRIMARY KEY (`ExamID`), 
	CONSTRAINT `fk_exams_CreatedBy_students` FOREIGN KEY(`CreatedBy`) REFERENCES students (`ID`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;


CREATE TABLE profiles (
	id INTEGER NOT NULL AUTO_INCREMENT, 
	student_id INTEGER NOT NULL, 
	image_path VARCHAR(255), 
	embedding BLOB, 
	quality TEXT, 
	registered_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_profiles PRIMARY KEY (id), 
	CONSTRAINT uq_profiles_student_id UNIQUE (student_id), 
	CONSTRAINT fk_profiles_student_id_students FOREIGN KEY(student_id) REFERENCES students (`ID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;


CREATE TABLE exam_sessions (
	`SessionID` INTEGER NOT NULL AUTO_INCREMENT, 
	`StudentID` INTEGER NOT NULL, 
	`ExamID` INTEGER NOT NULL, 
	`Status` VARCHAR(16) NOT NULL, 
	`StartedAt` DATETIME NOT NULL, 
	`Deadline` DATETIME NOT NULL, 
	`EndedAt` DATETIME, 
	`TerminationReason` VARCHAR(255), 
	`QuestionOrder` TEXT NOT NULL, 
	`AutoTerminate` BOOL, 
	`DisabledRules` VARCHAR(500) NOT NULL, 
	`IdentityConfirmedAt` DATETIME, 
	`IdentityDistance` FLOAT, 
	`IdentityLiveness` VARCHAR(64), 
	`ExtraMinutes` INTEGER NOT NULL DEFAULT '0', 
	CONSTRAINT pk_exam_sessions PRIMARY KEY (`SessionID`), 
	CONSTRAINT ck_exam_sessions_status CHECK (Status IN ('IN_PROGRESS', 'COMPLETED', 'TERMINATED')), 
	CONSTRAINT `fk_exam_sessions_StudentID_students` FOREIGN KEY(`StudentID`) REFERENCES students (`ID`) ON DELETE CASCADE, 
	CONSTRAINT `fk_exam_sessions_ExamID_exams` FOREIGN KEY(`ExamID`) REFERENCES exams (`ExamID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX `ix_exam_sessions_ExamID` ON exam_sessions (`ExamID`);
CREATE INDEX `ix_exam_sessions_StudentID` ON exam_sessions (`StudentID`);

CREATE TABLE questions (
	`QuestionID` INTEGER NOT NULL AUTO_INCREMENT, 
	`ExamID` INTEGER NOT NULL, 
	`Text` TEXT NOT NULL, 
	`Options` TEXT NOT NULL, 
	`CorrectIndex` INTEGER NOT NULL, 
	`Position` INTEGER NOT NULL, 
	`Points` INTEGER NOT NULL, 
	CONSTRAINT pk_questions PRIMARY KEY (`QuestionID`), 
	CONSTRAINT `fk_questions_ExamID_exams` FOREIGN KEY(`ExamID`) REFERENCES exams (`ExamID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX `ix_questions_ExamID` ON questions (`ExamID`);

CREATE TABLE answers (
	`AnswerID` INTEGER NOT NULL AUTO_INCREMENT, 
	`SessionID` INTEGER NOT NULL, 
	`QuestionID` INTEGER NOT NULL, 
	`SelectedIndex` INTEGER, 
	`Flagged` BOOL NOT NULL, 
	`AnsweredAt` DATETIME NOT NULL, 
	`ClientSeq` BIGINT, 
	CONSTRAINT pk_answers PRIMARY KEY (`AnswerID`), 
	CONSTRAINT `uq_answers_SessionID_QuestionID` UNIQUE (`SessionID`, `QuestionID`), 
	CONSTRAINT `fk_answers_SessionID_exam_sessions` FOREIGN KEY(`SessionID`) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE, 
	CONSTRAINT `fk_answers_QuestionID_questions` FOREIGN KEY(`QuestionID`) REFERENCES questions (`QuestionID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX `ix_answers_QuestionID` ON answers (`QuestionID`);

CREATE TABLE exam_results (
	`ResultID` INTEGER NOT NULL AUTO_INCREMENT, 
	`StudentID` INTEGER NOT NULL, 
	`SessionID` INTEGER NOT NULL, 
	`ExamID` INTEGER NOT NULL, 
	`Score` INTEGER NOT NULL, 
	`Total` INTEGER NOT NULL, 
	`Percentage` FLOAT NOT NULL, 
	`Grade` VARCHAR(8) NOT NULL, 
	`Status` VARCHAR(16) NOT NULL, 
	`Outcome` VARCHAR(16), 
	`CreatedAt` DATETIME NOT NULL, 
	CONSTRAINT pk_exam_results PRIMARY KEY (`ResultID`), 
	CONSTRAINT ck_exam_results_status CHECK (Status IN ('PASS', 'FAIL', 'TERMINATED')), 
	CONSTRAINT `fk_exam_results_StudentID_students` FOREIGN KEY(`StudentID`) REFERENCES students (`ID`) ON DELETE CASCADE, 
	CONSTRAINT `uq_exam_results_SessionID` UNIQUE (`SessionID`), 
	CONSTRAINT `fk_exam_results_SessionID_exam_sessions` FOREIGN KEY(`SessionID`) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE, 
	CONSTRAINT `fk_exam_results_ExamID_exams` FOREIGN KEY(`ExamID`) REFERENCES exams (`ExamID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX `ix_exam_results_ExamID` ON exam_results (`ExamID`);
CREATE INDEX `ix_exam_results_StudentID` ON exam_results (`StudentID`);

CREATE TABLE recordings (
	id INTEGER NOT NULL AUTO_INCREMENT, 
	session_id INTEGER NOT NULL, 
	student_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	path VARCHAR(255) NOT NULL, 
	mime VARCHAR(64) NOT NULL, 
	bytes INTEGER NOT NULL, 
	sequence INTEGER NOT NULL, 
	started_at DATETIME, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_recordings PRIMARY KEY (id), 
	CONSTRAINT fk_recordings_session_id_exam_sessions FOREIGN KEY(session_id) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE, 
	CONSTRAINT fk_recordings_student_id_students FOREIGN KEY(student_id) REFERENCES students (`ID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX ix_recordings_session_id ON recordings (session_id);
CREATE INDEX ix_recordings_student_id ON recordings (student_id);

CREATE TABLE room_scans (
	id INTEGER NOT NULL AUTO_INCREMENT, 
	student_id INTEGER NOT NULL, 
	exam_id INTEGER NOT NULL, 
	session_id INTEGER, 
	path VARCHAR(255) NOT NULL, 
	mime VARCHAR(64) NOT NULL, 
	bytes INTEGER NOT NULL, 
	duration_s FLOAT NOT NULL, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_room_scans PRIMARY KEY (id), 
	CONSTRAINT fk_room_scans_student_id_students FOREIGN KEY(student_id) REFERENCES students (`ID`) ON DELETE CASCADE, 
	CONSTRAINT fk_room_scans_exam_id_exams FOREIGN KEY(exam_id) REFERENCES exams (`ExamID`) ON DELETE CASCADE, 
	CONSTRAINT fk_room_scans_session_id_exam_sessions FOREIGN KEY(session_id) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX ix_room_scans_exam_id ON room_scans (exam_id);
CREATE INDEX ix_room_scans_session_id ON room_scans (session_id);
CREATE INDEX ix_room_scans_student_id ON room_scans (student_id);

CREATE TABLE session_messages (
	id INTEGER NOT NULL AUTO_INCREMENT, 
	session_id INTEGER NOT NULL, 
	student_id INTEGER NOT NULL, 
	sender VARCHAR(16) NOT NULL, 
	author_id INTEGER, 
	preset VARCHAR(32), 
	body TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	acknowledged_at DATETIME, 
	CONSTRAINT pk_session_messages PRIMARY KEY (id), 
	CONSTRAINT ck_session_messages_sender CHECK (sender IN ('proctor', 'student')), 
	CONSTRAINT fk_session_messages_session_id_exam_sessions FOREIGN KEY(session_id) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE, 
	CONSTRAINT fk_session_messages_student_id_students FOREIGN KEY(student_id) REFERENCES students (`ID`) ON DELETE CASCADE, 
	CONSTRAINT fk_session_messages_author_id_students FOREIGN KEY(author_id) REFERENCES students (`ID`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX ix_session_messages_created_at ON session_messages (created_at);
CREATE INDEX ix_session_messages_session_id ON session_messages (session_id);
CREATE INDEX ix_session_messages_student_id ON session_messages (student_id);

CREATE TABLE violations (
	`ViolationID` INTEGER NOT NULL AUTO_INCREMENT, 
	`StudentID` INTEGER NOT NULL, 
	`SessionID` INTEGER NOT NULL, 
	`Type` VARCHAR(40) NOT NULL, 
	`Severity` VARCHAR(16) NOT NULL, 
	`Details` TEXT NOT NULL, 
	`Timestamp` DATETIME NOT NULL, 
	`EvidencePath` VARCHAR(255), 
	`ClipPath` VARCHAR(255), 
	`ReviewStatus` VARCHAR(16) NOT NULL, 
	`ReviewNote` TEXT, 
	`ReviewedBy` INTEGER, 
	`ReviewedAt` DATETIME, 
	`ClientID` VARCHAR(36), 
	CONSTRAINT pk_violations PRIMARY KEY (`ViolationID`), 
	CONSTRAINT ck_violations_review_status CHECK (ReviewStatus IN ('PENDING', 'CONFIRMED', 'DISMISSED')), 
	CONSTRAINT `fk_violations_StudentID_students` FOREIGN KEY(`StudentID`) REFERENCES students (`ID`) ON DELETE CASCADE, 
	CONSTRAINT `fk_violations_SessionID_exam_sessions` FOREIGN KEY(`SessionID`) REFERENCES exam_sessions (`SessionID`) ON DELETE CASCADE, 
	CONSTRAINT `fk_violations_ReviewedBy_students` FOREIGN KEY(`ReviewedBy`) REFERENCES students (`ID`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE UNIQUE INDEX `ix_violations_ClientID` ON violations (`ClientID`);
CREATE INDEX `ix_violations_SessionID` ON violations (`SessionID`);
CREATE INDEX `ix_violations_StudentID` ON violations (`StudentID`);
CREATE INDEX `ix_violations_Timestamp` ON violations (`Timestamp`);
