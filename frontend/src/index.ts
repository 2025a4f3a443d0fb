/**
 * Public entry of the backups UI: the API client, the provider and the components.
 *
 *   const client = createBackupsClient({ baseURL: '', getToken: () => auth.token });
 *   <BackupsProvider client={client}>
 *     <CreateBackupButton />
 *     <BackupHistory />
 *     <EncryptionKeysPanel />   // admins (manage_encryption_keys) only
 *     <ActivityPanel />         // admins only: the clinic's activity log and its CSV export
 *   </BackupsProvider>
 */
import './styles/backups.css';

export {
  createBackupsClient,
  normaliseError,
  isBackupsApiError,
  BackupsApiError,
  API_ERROR_CODES,
  AUDIT_ACTIONS,
  AUDIT_ACTION_FAMILIES,
  BACKUP_ERROR_CODES,
  BACKUP_STATUSES,
  BACKUP_TRIGGERS,
  CLIENT_ERROR_CODES,
  PERMISSIONS,
  RESTORE_STATUSES,
  RESTORE_STEPS,
  containsPrivateKey,
} from './services/backups';
export type {
  Backup,
  BackupPage,
  BackupStatus,
  BackupTrigger,
  BackupErrorCode,
  ApiErrorCode,
  ClientErrorCode,
  ErrorCode,
  ErrorDetail,
  Download,
  DownloadRecipient,
  EncryptionKey,
  EncryptionKeyList,
  RegisterKeyRequest,
  Recipient,
  Me,
  Permission,
  Role,
  CreateBackupRequest,
  BackupSettings,
  BackupSettingsUpdate,
  Weekday,
  ListBackupsParams,
  Restore,
  RestorePage,
  RestoreStatus,
  RestoreStep,
  VerifyOutcome,
  ListRestoresParams,
  AuditEntry,
  AuditPage,
  AuditExport,
  AuditExportRequest,
  AuditActionCode,
  ListAuditParams,
  BackupsClient,
  BackupsClientOptions,
  TokenGetter,
  RequestOpts,
} from './services/backups';
export type { components, paths, operations } from './services/api-types';
// The next contract (issues 21 and 17) until openapi.yaml has it: see contract-next.ts.
export {
  undeleteBackup,
  cancelBackup,
  canCancel,
  daysUntil,
  asNext,
  BACKUP_STATUSES_NEXT,
} from './services/contract-next';
export type { BackupNext, BackupStatusNext, MeNext } from './services/contract-next';
export { NEXT_API_ERROR_CODES } from './services/backups';

export { BackupsProvider, useBackups, isActive } from './components/BackupsProvider';
export type { BackupsProviderProps, BackupsContextValue, HistoryFilters, HistoryState } from './components/BackupsProvider';
export { BackupHistory } from './components/BackupHistory';
export type { BackupHistoryProps } from './components/BackupHistory';
export { CreateBackupButton, NOTE_MAX_LENGTH } from './components/CreateBackupButton';
export type { CreateBackupButtonProps } from './components/CreateBackupButton';
export { DownloadModal, DEFAULT_GUIDE_URL } from './components/DownloadModal';
export type { DownloadModalProps } from './components/DownloadModal';
export { DeleteBackupDialog } from './components/DeleteBackupDialog';
export { BackupSettingsPanel } from './components/BackupSettingsPanel';
export type { BackupSettingsPanelProps } from './components/BackupSettingsPanel';
export type { DeleteBackupDialogProps } from './components/DeleteBackupDialog';
export { EncryptionKeysPanel } from './components/EncryptionKeysPanel';
export { ActivityPanel, auditQuery } from './components/ActivityPanel';
export type { ActivityPanelProps, ActivityFilters } from './components/ActivityPanel';
export type { EncryptionKeysPanelProps } from './components/EncryptionKeysPanel';
export { KeyWizardDialog } from './components/KeyWizardDialog';
export type { KeyWizardDialogProps } from './components/KeyWizardDialog';
export { PublicKeyDialog } from './components/PublicKeyDialog';
export type { PublicKeyDialogProps } from './components/PublicKeyDialog';
export { generateKeyPair, isAgePublicKey, keyFileName, keyFileText } from './crypto/age';
export type { AgeKeyPair } from './crypto/age';
export { Notifications, NotificationsProvider, useNotifications } from './components/Notifications';
export type { Notification, NotificationKind, NotifyInput, NotificationsProps } from './components/Notifications';
export { Dialog } from './components/Dialog';
export type { DialogProps } from './components/Dialog';
export { StatusBadge } from './components/StatusBadge';
export { RestoreDialog } from './components/RestoreDialog';
export type { RestoreDialogProps } from './components/RestoreDialog';
export { RestorePanel } from './components/RestorePanel';
export type { RestorePanelProps } from './components/RestorePanel';
export { UndoRestoreDialog } from './components/UndoRestoreDialog';
export type { UndoRestoreDialogProps } from './components/UndoRestoreDialog';
export { zoneLabel, zoneOptions, nextRunOf, zonedDayStart } from './components/zones';
export { VerificationBadge, verificationState } from './components/VerificationBadge';
export type { VerificationState } from './components/VerificationBadge';
export { useRestoreJob, isRestoreActive } from './components/useRestoreJob';
export { formatBytes, formatDateTime, formatCountdown, distinctDateLabels } from './components/format';
export {
  createBackupsI18n,
  addBackupsResources,
  languageFromLocale,
  messages,
  NAMESPACE as I18N_NAMESPACE,
  SUPPORTED_LANGUAGES,
} from './i18n';
export type { Language } from './i18n';
