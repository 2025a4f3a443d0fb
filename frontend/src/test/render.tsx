import { render } from '@testing-library/react';
import type { ReactNode } from 'react';
import { BackupsProvider, type BackupsProviderProps } from '../components/BackupsProvider';
import type { FakeClient } from './fixtures';

export function renderWithProvider(
  ui: ReactNode,
  client: FakeClient,
  props: Partial<Omit<BackupsProviderProps, 'client' | 'children'>> = {},
) {
  return render(
    <BackupsProvider client={client} {...props}>
      {ui}
    </BackupsProvider>,
  );
}
